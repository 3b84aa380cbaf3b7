"""The email's life before the open: the mail services' delivery events (delivered, deferred, bounces, drops,
complaints, unsubscribes), taken in at the edge from each provider's signed webhook (`deliveries.providers`),
published on the bus, matched to registered sends and stored exactly once by the delivery loader."""
