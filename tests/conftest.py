import os

import pytest

# No analytics, no network, ever (the Standards): set before anything imports Prefect.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Spinning OpenMP threads fight each other on a busy 2-core machine (a CPU training test: 57 s -> 23 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_prefect"]


@pytest.fixture(autouse=True, scope="session")
def prefect_logging_on_the_sessions_stderr():
    """Prefect's console log handler keeps the stream it was built with. Built inside a test using `capsys`, it
    would write to that test's buffer, closed once the test ends, and every later Prefect log line in the same
    worker process would fail ("I/O operation on closed file"). So configure it once, first, on the session's
    stderr."""
    import prefect.logging.configuration as logging_configuration

    if not logging_configuration.PROCESS_LOGGING_CONFIG:
        logging_configuration.setup_logging()

# The suite runs on two pytest-xdist workers (`-n 2`, pyproject's addopts): many tests wait on servers and
# subprocesses, so a second worker fills those waits. A test file is one unit of work, so its module fixtures
# (a trained stage-1 model, a rendered dataset) are built once, on one worker; the files driving
# `prefect server start` (+ `prefect deploy --all`) share one unit, hence one server.
SHARED_UNITS = {"test_flows_server_ui.py": "prefect-server", "test_flows_worker.py": "prefect-server"}
# The longest units go out first, so the two workers finish together rather than one waiting on a long file
# handed out last (measured with --durations on 2 cores; a file not named here follows these).
LONGEST_FIRST = ("test_flows_worker.py", "test_flows_server_ui.py", "test_train_vary.py", "test_train_zero2.py",
                 "test_train_cli.py", "test_flows_api.py", "test_cli_errors.py", "test_gen_latex_page.py",
                 "test_gen_chart.py", "test_flows_pipeline.py", "test_flows_render.py", "test_flows_dask.py",
                 "test_train_pretrained.py", "test_storage_cli.py", "test_gen_table.py", "test_gen_formula.py",
                 "test_tex_fonts.py", "test_storage.py", "test_flows_s3.py")


def _unit(nodeid: str) -> str:
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return SHARED_UNITS.get(name, name)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent under -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    """Units of work as above, handed out in collection order (longest first), not by test count. (xdist's
    own `--dist loadgroup` cannot do this here: its group suffix is lost on pytest 9's node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return FileUnits(config, log)
