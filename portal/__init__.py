"""The submission portal (issue 18): universities upload, read their verdict at once, and explain
their warnings; the programme office sees who is late and decides on the explanations.

`lab2fab portal` serves it (portal/app.py); `lab2fab users` manages its accounts (portal/accounts.py).
It reads the same data folder as the pipeline and writes only the landing zone, the overrides file
and its own state folder `<data_dir>/portal/` (accounts, the upload log, explanations, refused files).
"""
