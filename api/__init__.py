"""The query API, one module per resource (messages, campaigns, recipients, privacy, webhooks, live) over what
they share about a request (`api.context`) and the SQL grouped by what it answers (`api.sql`): registers sent
messages, instruments their HTML, and answers analysts' questions."""
