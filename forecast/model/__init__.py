"""The model: its config, the network, scaling, the one encode/decode path, the predictor,
conformal intervals and device placement."""
