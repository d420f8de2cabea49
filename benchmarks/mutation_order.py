"""The test order of a mutation run: ``mutation.py`` loads this into pytest as ``-p benchmarks.mutation_order``.

mutmut runs a mutant's tests with ``-x``, so the first test that fails ends the run. The project's
conftest orders files by their number of tests, which puts ``test_converter_conformance.py`` first,
and its tests build every source's samples and convert them (``sample_stores``: minutes, once per
pytest session, that is once per mutant). Here the tests that need a fixture building sample data go
after those that do not (stably: the order among each group is kept), so a mutant a fast test kills
is not first made to wait for the samples. The order decides how soon a mutant is killed, not whether:
a mutant survives only if every test passes, in any order.
"""

from __future__ import annotations

import pytest

#: fixtures that write or convert sample data (the session's store of every source; a converter test
#: file's module-scoped sample tree)
SLOW_FIXTURES = frozenset({"sample_stores", "sample_root", "samples"})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items) -> None:
    items.sort(key=lambda item: bool(SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))))
