"""One module per mail service: check that a request is the provider's own (its signature), then read its
format into `schemas.delivery_events.DeliveryEvent`s. Pure: no I/O (the SNS certificate is fetched by the
caller, `deliveries.providers.sns` says which URL it may be fetched from)."""
