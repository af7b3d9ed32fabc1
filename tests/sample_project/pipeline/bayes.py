"""Updates the posterior of a cause after each contradiction."""


class BayesianUpdater:
    def __init__(self, bus):
        self.bus = bus
        self.posterior = 0.5
        bus.subscribe("contradiction.detected", self.on_contradiction)

    async def on_contradiction(self, event):
        self.posterior = min(1.0, self.posterior * 1.2)
        edge = event.payload["edge"]
        await self.bus.publish("posterior.updated", {
            "posterior": self.posterior, "cause": edge["source"], "effect": edge["target"]})
