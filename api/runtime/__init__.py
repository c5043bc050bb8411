"""The serving runtime: which processes run what. `server.serve` plans the workers and, with
per_device inference, one inference process per device (`inference`, `workers`, `cores`), runs
uvicorn with the transport limits (`transport`) and the GC tuning (`gc_tuning`), and supervises
them; `commands` contributes `forecast serve`."""
