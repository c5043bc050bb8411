"""The serving runtime: which processes run what. `plan` decides it once from the settings (the
workers, each one's settings, one inference process per device with per_device inference, the
forward factory); `server.serve` plans, then supervises (`workers`), running uvicorn with the
transport limits (`transport`) and the GC tuning (`gc_tuning`); `commands` contributes
`forecast serve`."""
