"""The logic of lab2fab, one package per stage (ingest, contract, warehouse, model, publish, demo):
readers, normalisation, the data contract, the DuckDB warehouse and its SQL models, the model and
the report. Testable without Prefect: no Prefect flow, task or logger here (modules log with the
standard library; flows/ forwards those records to the run's log), no lock (the single-writer
lock is flows/lock.py) and no failpoint (flows/faults.py; a function with a point inside takes an
`on_step` callback). Configuration comes from `transforms.config.settings()`, never read at import
time. Its side effects are the data it is asked to write: the warehouse, staged Parquet, published
files. The one Prefect import is optional: the pseudonymisation key may be read from a Prefect
Secret block (`LAB2FAB_PSEUDONYM_SECRET_BLOCK`)."""
