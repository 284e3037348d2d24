"""The ideal router: a discrete-event simulation with perfect, instant global knowledge.

Each arrival goes to the node where it is expected to finish first (shortest expected
delay, the heterogeneous-speed form of join-shortest-queue): a free slot costs the node's
mean service time; a queue costs the expected wait for a slot on top. The dispatcher knows
every node's exact state and speed but not the request's output length, as a real router.
Nodes apply the same admission rules as the real ones (``max_in_flight`` slots, a queue
of ``max_queue_depth``, a queued request refused after ``max_wait_s``), so refusals are
comparable. Nothing is delayed: no report lag, no proxy, no network.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from bench.common import Outcome
from bench.workload import NodeSpec, Request


@dataclass
class _Node:
    spec: NodeSpec
    mean_service_s: float
    running: int = 0
    queue: deque[tuple[Request, float]] = field(default_factory=deque)

    def can_accept(self) -> bool:
        return self.running < self.spec.max_in_flight or (
            len(self.queue) < self.spec.max_queue_depth
        )

    def expected_finish_s(self) -> float:
        if self.running < self.spec.max_in_flight:
            return self.mean_service_s
        ahead = len(self.queue) + 1
        return (ahead / self.spec.max_in_flight + 1) * self.mean_service_s


_ARRIVE, _DONE, _TIMEOUT = 0, 1, 2


def simulate(
    trace: list[Request], nodes: list[NodeSpec], mean_prompt: float, mean_output: float
) -> list[Outcome]:
    """Replay ``trace`` on ``nodes`` under the ideal dispatcher; one outcome per request."""
    if not nodes:
        raise ValueError("the ideal simulation needs at least one node")
    state = [_Node(n, n.service_s(mean_prompt, mean_output)) for n in nodes]
    outcomes: dict[int, Outcome] = {}
    events: list[tuple[float, int, int, int, int]] = []  # (time, order, kind, req id, node)
    by_id = {r.id: r for r in trace}
    order = 0
    for r in trace:
        heapq.heappush(events, (r.arrival_s, order, _ARRIVE, r.id, -1))
        order += 1
    started: set[int] = set()

    def start(i: int, req: Request, now: float) -> None:
        nonlocal order
        node = state[i]
        node.running += 1
        started.add(req.id)
        spec = node.spec
        service = spec.service_s(req.prompt_tokens, req.output_tokens)
        outcomes[req.id] = Outcome(
            id=req.id,
            status=200,
            node=spec.name,
            ttft_s=now - req.arrival_s + spec.ttft_s(req.prompt_tokens),
            e2e_s=now - req.arrival_s + service,
            output_tokens=req.output_tokens,
        )
        heapq.heappush(events, (now + service, order, _DONE, req.id, i))
        order += 1

    while events:
        now, _, kind, rid, i = heapq.heappop(events)
        req = by_id[rid]
        if kind == _ARRIVE:
            candidates = [j for j, n in enumerate(state) if n.can_accept()]
            if not candidates:
                outcomes[rid] = Outcome.refused(rid, "queue_full")
                continue
            j = min(candidates, key=lambda j: (state[j].expected_finish_s(), j))
            node = state[j]
            if node.running < node.spec.max_in_flight:
                start(j, req, now)
            else:
                node.queue.append((req, now))
                heapq.heappush(events, (now + node.spec.max_wait_s, order, _TIMEOUT, rid, j))
                order += 1
        elif kind == _DONE:
            node = state[i]
            node.running -= 1
            if node.queue:
                queued, _ = node.queue.popleft()
                start(i, queued, now)
        elif rid not in started:  # a queue timeout that fired before a slot freed
            node = state[i]
            node.queue = deque(item for item in node.queue if item[0].id != rid)
            outcomes[rid] = Outcome.refused(rid, "timeout")
    return [outcomes[r.id] for r in trace]
