"""Builds the causal graph from updated posteriors."""


class GraphBuilder:
    def __init__(self, bus):
        self.bus = bus
        self.nodes = set()
        bus.subscribe("posterior.updated", self.on_posterior_updated)

    async def add_node(self, node):
        self.nodes.add(node)
        # Nobody subscribes to graph.node_added: an orphaned type.
        await self.bus.publish("graph.node_added", {"node": node})

    async def on_posterior_updated(self, event):
        if event.payload["posterior"] > 0.9:
            edge = {"source": event.payload["cause"], "target": event.payload["effect"]}
            await self.bus.publish("graph.edge_added", edge)
