"""Looks for contradictions in each new edge."""


class ContradictionDetector:
    def __init__(self, bus):
        self.bus = bus
        self.bus.subscribe("graph.edge_added", self.on_edge_added)

    async def on_edge_added(self, event):
        edge = event.payload
        if edge["source"] == edge["target"]:
            await self.bus.publish("contradiction.detected", {"edge": edge})
