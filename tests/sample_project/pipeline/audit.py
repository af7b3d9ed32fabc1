"""Keeps an audit trail of posteriors and validations."""


class Auditor:
    def __init__(self, bus):
        self.bus = bus
        self.trail = []
        bus.subscribe("posterior.*", self.on_posterior)

    def on_posterior(self, event):
        self.trail.append((event.event_type, event.seq))

    async def report(self, kind):
        # The type is computed: the analysis lists it as dynamic.
        await self.bus.publish(f"audit.{kind}", {"entries": len(self.trail)})


def record_validation(event):
    return event.payload.get("valid", False)
