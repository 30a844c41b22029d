"""A local stand-in for the Hugging Face Hub API, enough for `huggingface_hub.HfApi` to push:
whoami-v2, repos/create, branch, validate-yaml, preupload (every file "regular") and the
NDJSON commit endpoint. It records each request (not the client's housekeeping GETs) and keeps
the committed files per branch.

    with FakeHub(tokens={"hf_good": "alice"}) as hub:
        HfApi(endpoint=hub.url, token="hf_good").whoami()
        hub.requests[-1].path   # '/api/whoami-v2'
"""
from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# huggingface_hub's own housekeeping (its user-agent's agent-harness registry), not part of a push
HOUSEKEEPING = {"/api/agent-harnesses"}
TOKEN = "hf_tunesmithFAKEtoken0123456789"   # recognizable, for the token-hygiene checks


def subprocess_env(hub_url: str, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """Environment for a push in a child process: endpoint and token as a user sets them."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update({"HF_ENDPOINT": hub_url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home),
                "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    if token:
        env["HF_TOKEN"] = token
    return env


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def ndjson(self) -> list[dict]:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


@dataclass
class Repo:
    repo_id: str
    private: bool | None
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict] = field(default_factory=list)
    pull_requests: list[dict] = field(default_factory=list)


class FakeHub:
    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = tokens or {}
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                req = Request(self.command, unquote(parts.path), parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, self._body())
                if req.path in HOUSEKEEPING:
                    self._send(404, {"error": "not served by the fake Hub"})
                    return
                hub.requests.append(req)
                status, payload = hub.route(req)
                self._send(status, payload)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the API --------------------------------------------------------------------------
    def _user(self, req: Request) -> str | None:
        auth = req.headers.get("authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    def route(self, req: Request) -> tuple[int, Any]:
        user = self._user(req)
        if user is None:
            return 401, {"error": "Invalid credentials in Authorization header"}
        p = req.path
        if p == "/api/whoami-v2":
            return 200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token",
                                                                           "accessToken": {"role": "write"}}}
        if p == "/api/repos/create":
            body = req.json()
            repo_id = f"{body.get('organization') or user}/{body['name']}"
            if body.get("organization") not in (None, user):
                return 403, {"error": f"You don't have the rights to create a model under {body['organization']}"}
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            visibility = body.get("visibility")
            self.repos[repo_id] = Repo(repo_id, None if visibility is None else visibility == "private")
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}
        if p == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if p.startswith("/api/models/"):
            return self._repo_call(req, p.removeprefix("/api/models/"))
        return 404, {"error": f"no route {req.method} {p}"}

    def _repo_call(self, req: Request, rest: str) -> tuple[int, Any]:
        for verb in ("branch", "preupload", "commit"):
            marker = f"/{verb}/"
            if marker in rest:
                repo_id, ref = rest.split(marker, 1)
                break
        else:
            return 404, {"error": f"no route {rest}"}
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": "Repository not found"}
        if verb == "branch":
            if ref in repo.branches:
                return 409, {"error": "Reference already exists"}
            repo.branches[ref] = dict(repo.branches["main"])
            return 200, {}
        if ref not in repo.branches:
            return 404, {"error": f"Invalid rev id: {ref}"}
        if verb == "preupload":
            files = req.json()["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in files]}
        lines = req.ndjson()
        header = lines[0]["value"]
        files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                 for line in lines[1:] if line["key"] == "file"}
        oid = f"{len(repo.commits) + 1:040x}"
        commit = {"branch": ref, "summary": header["summary"], "files": files, "oid": oid,
                  "create_pr": "create_pr" in req.query}
        repo.commits.append(commit)
        pr_url = None
        if commit["create_pr"]:
            repo.pull_requests.append(commit)
            pr_url = f"{self.url}/{repo_id}/discussions/{len(repo.pull_requests)}"
        else:
            repo.branches[ref].update(files)
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": pr_url}
