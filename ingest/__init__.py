"""The edge: answers pixels and clicks at once and publishes the raw hit to the bus. Never waits on anything
slow, never breaks an email."""
