"""A real `prefect server start` (SQLite, loopback): `prefect deploy --all` registers prefect.yaml on it; a
served render deployment is run through the API, its run and artifacts checked, and the UI's flow-run page
opened in headless Chromium (a screenshot under test-output/) to check it shows the run."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures_prefect import stop as _stop
from tests.fixtures_prefect import wait_for as _wait

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "test-output"


def test_prefect_yaml_deploys_to_a_live_server(deployed_server):
    """What `prefect deploy --all` registers: the server validates the work pools' job templates (the GPU
    one is refused when a template variable is undeclared) and every deployment's pool and parameters."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env = deployed_server
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    with temporary_settings({PREFECT_API_URL: f"{url}/api"}), get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        live = {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}
        assert {d["name"] for d in spec} == {name.split("/", 1)[1] for name in live}
        for d in spec:
            (dep,) = [v for k, v in live.items() if k.endswith("/" + d["name"])]
            assert dep.work_pool_name == d["work_pool"]["name"]
            assert dep.parameters == d.get("parameters", {})
            assert [s.schedule.cron for s in dep.schedules] == [c["cron"] for c in d.get("schedules", [])]
        gpu = client.read_work_pool("gpu")
        assert gpu.base_job_template["variables"]["properties"]["gpus"]["default"] == 8
        # the trigger that runs the retrain gate when a nightly render completes is an automation on the server
        names = {a.name for a in client.read_automations()}
        assert any("retrain-vary-tiny" in n for n in names), names


@pytest.mark.slow
def test_served_render_deployment_shows_run_and_artifacts_in_ui(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env = prefect_server
    api = f"{url}/api"
    serve_env = dict(env, PREFECT_API_URL=api)
    serve = subprocess.Popen([sys.executable, "-c", "from flows.render import render; render.serve(name='ui-test')"],
                             cwd=REPO, env=serve_env, stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                _wait("deployment", lambda: client.read_deployment_by_name("render/ui-test"), 120, serve)
            data = tmp_path / "data"
            run = run_deployment("render/ui-test", timeout=600, poll_interval=2,
                                 parameters={"kind": "document", "count": 3, "seed": 5, "shard_rows": 2, "out": str(data), "workers": 1})
            assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])
            with get_client(sync_client=True) as client:
                arts = {a.key: a for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
        from flows.common import root_tag

        scope = f"render-document-{root_tag(str(data))}"
        assert {f"{scope}-{a}" for a in ("stats", "gallery", "progress", "manifest", "shards")} <= set(arts)
        assert arts[f"{scope}-progress"].data == 100.0
        assert str(data / "datasets/document/manifests/v000001.json") in arts[f"{scope}-manifest"].data
    finally:
        _stop(serve)

    shot = _screenshot(f"{url}/runs/flow-run/{run.id}", run.name)
    assert shot.stat().st_size > 10_000


def _screenshot(page: str, run_name: str) -> Path:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000",
                # offline: only loopback resolves, so the UI cannot fetch anything from outside
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_page_load_timeout(120)
        driver.get(page)
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "prefect-ui-flow-run.png"
        try:
            WebDriverWait(driver, 120).until(lambda d: run_name in d.find_element(By.TAG_NAME, "body").text)
            WebDriverWait(driver, 60).until(lambda d: "Completed" in d.find_element(By.TAG_NAME, "body").text)
        except Exception:
            driver.save_screenshot(str(shot))  # the picture says what the page showed instead
            raise AssertionError(f"the UI page did not show run {run_name}; it showed: "
                                 f"{driver.find_element(By.TAG_NAME, 'body').text[:500]!r} (see {shot})") from None
        time.sleep(1)  # let the graph and logs settle for a readable picture
        driver.save_screenshot(str(shot))
        return shot
    finally:
        driver.quit()
