"""The official OpenAI and Anthropic SDKs (npm), run by Node through egressd
against the mock backend, trusting egressd's CA: streaming and not, and the
OpenAI SDK against a route with model aliases."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import API_KEY, ANTHROPIC_KEY, INFERENCE_ENV, inference_config

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.environ.get("SDK_NODE_MODULES", os.path.join(HERE, "../../build/node/node_modules"))
SCRIPT = os.path.join(HERE, "../node/sdk_test.js")


def run_sdks(e, tmp_path, *args):
    assert shutil.which("node"), "node is needed for the SDK tests"
    assert os.path.isdir(NODE_DIR), "run `make test` (it installs the SDKs into build/node)"
    env = dict(os.environ, EGRESSD_PROXY=e.url, NODE_EXTRA_CA_CERTS=str(tmp_path / "ca.pem"),
               NODE_PATH=NODE_DIR)
    r = subprocess.run(["node", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_official_sdks(start_egressd, backend, tmp_path):
    routes = (f"[route openai]\nendpoint = http://127.0.0.1:{backend.port}/v1\nprovider = openai\n"
              "models = gpt-*, text-embedding-*\napi_key_env = TEST_OPENAI_KEY\n"
              f"[route claude]\nendpoint = http://127.0.0.1:{backend.port}\nprovider = anthropic\n"
              "api_key_env = TEST_ANTHROPIC_KEY\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    assert run_sdks(e, tmp_path).count("PASS") == 9
    for rec in backend.requests():
        headers = {k.lower(): v for k, v in rec["headers"]}
        if rec["path"] == "/v1/messages":
            assert headers["x-api-key"] == ANTHROPIC_KEY
        else:
            assert headers["authorization"] == f"Bearer {API_KEY}", "the client's key never passes"
    assert "sk-client-key" not in e.logpath.read_text()


def test_openai_sdk_with_model_aliases(start_egressd, backend, tmp_path):
    routes = (f"[route local]\nendpoint = http://127.0.0.1:{backend.port}/v1\nprovider = openai\n"
              "model_map = gpt-4o=llama-3.1-70b, gpt-4o-mini=llama-3.1-8b\napi_key_env = TEST_OPENAI_KEY\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    assert run_sdks(e, tmp_path, "aliases").count("PASS") == 4
    sent = [json.loads(rec["body"])["model"] for rec in backend.requests()]
    assert sent == ["llama-3.1-70b", "llama-3.1-8b"], "listing and retrieving never reached the backend"
