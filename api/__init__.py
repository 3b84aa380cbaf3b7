"""The query API: registers sent messages, instruments their HTML, and answers analysts' questions."""
