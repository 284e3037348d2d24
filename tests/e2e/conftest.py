"""Fixtures shared by the end-to-end tests: one process group per module (fleets are costly)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import ProcGroup


@pytest.fixture(scope="module")
def module_procs(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ProcGroup]:
    """Processes that live for the whole module; their logs print if any test failed."""
    group = ProcGroup(tmp_path_factory.mktemp("procs"))
    failed_before = request.session.testsfailed
    yield group
    group.stop_all()
    if request.session.testsfailed > failed_before:
        print(group.logs())
