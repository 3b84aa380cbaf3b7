"""The API's SQL, grouped by what it answers: pure builders (SQL text and bound parameters) and shapers (rows
in, answer dicts out). No module here does I/O; the handlers of `api/` run the queries (`api.context`).
"""
