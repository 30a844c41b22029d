"""A local stand-in for the Hugging Face Hub API, enough for `huggingface_hub.HfApi` to push:
whoami-v2, repos/create, branch, validate-yaml, preupload (every file "regular") and the
NDJSON commit endpoint. It records each request (not the client's housekeeping GETs) and keeps
the committed files per branch.

It also serves model repos for `snapshot_download` / `hf_hub_download` to download (`serve_model`):
`GET /api/models/{repo}/revision/{rev}` (model info: sha, siblings, gated), `GET
/api/models/{repo}/tree/{rev}` (the recursive file listing, LFS metadata for weights) and `HEAD`/`GET
/{repo}/resolve/{rev}/{file}` (headers X-Repo-Commit, ETag, Content-Length, and X-Linked-Etag /
X-Linked-Size for LFS files), with the Hub's error codes (X-Error-Code RepoNotFound,
RevisionNotFound, EntryNotFound, GatedRepo). Downloads need no token unless the repo is gated:
then only a user in its `granted` set gets the files (401 without a token, 403 with another one).

    with FakeHub(tokens={"hf_good": "alice"}) as hub:
        HfApi(endpoint=hub.url, token="hf_good").whoami()
        hub.requests[-1].path   # '/api/whoami-v2'
        sha = hub.serve_model("alice/tiny", Path("saved_model_folder"))
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# huggingface_hub's own housekeeping (its user-agent's agent-harness registry; libraries' telemetry
# pings under /api/telemetry/, e.g. TRL's trainers), not part of a push or a download
HOUSEKEEPING = {"/api/agent-harnesses"}
HOUSEKEEPING_PREFIXES = ("/api/telemetry/",)
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
    raw_path: str = ""   # the path still %-quoted (a revision such as refs%2Fpr%2F1 is one segment)

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


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".model", ".h5", ".msgpack", ".onnx")


def _git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _is_lfs(name: str, content: bytes) -> bool:
    return name.endswith(LFS_SUFFIXES) or len(content) > 10 * 2**20


@dataclass
class ServedModel:
    """A model repo the fake Hub serves for download: files per commit, refs, gating."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)   # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)                   # branch/tag -> sha
    gated: bool = False
    granted: set[str] = field(default_factory=set)                       # users who accepted its license

    def commit_of(self, revision: str) -> str | None:
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class FakeHub:
    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = tokens or {}
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self.models: dict[str, ServedModel] = {}
        self._connections: set[socket.socket] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                hub._connections.add(self.connection)

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
                if self.command != "HEAD":  # a HEAD answer has no body (else it corrupts the kept-alive connection)
                    self.wfile.write(body)

            def _send_raw(self, status: int, headers: dict[str, str], body: bytes) -> None:
                """A response with its own headers; HEAD gets the headers only (Content-Length included)."""
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                req = Request(self.command, unquote(parts.path), parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, self._body(), parts.path)
                if req.path in HOUSEKEEPING or req.path.startswith(HOUSEKEEPING_PREFIXES):
                    self._send(404, {"error": "not served by the fake Hub"})
                    return
                hub.requests.append(req)
                download = hub.download_route(req)
                if download is not None:
                    self._send_raw(*download)
                    return
                status, payload = hub.route(req)
                self._send(status, payload)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        """Stop serving, kept-alive connections included (a client's pooled connection must not
        reach a stopped Hub)."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connections.clear()

    # --- model repos served for download -------------------------------------------------------
    def serve_model(self, repo_id: str, files: dict[str, bytes] | Path, *, branch: str = "main",
                    gated: bool = False, granted: set[str] | None = None) -> str:
        """Commit `files` (a mapping, or every file under a folder) to `branch` of model repo
        `repo_id` (created on first use; `gated`/`granted` set then); returns the commit sha."""
        if isinstance(files, Path):
            files = {f.relative_to(files).as_posix(): f.read_bytes() for f in sorted(files.rglob("*")) if f.is_file()}
        files = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", **files}
        repo = self.models.setdefault(repo_id, ServedModel(repo_id, gated=gated, granted=set(granted or ())))
        digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        return sha

    def downloads(self) -> list[str]:
        """The files GET-downloaded so far (the paths under /resolve/)."""
        return [r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in self.requests
                if r.method == "GET" and "/resolve/" in r.path]

    @staticmethod
    def _error(status: int, code: str, message: str, commit: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        return status, headers, json.dumps({"error": message}).encode()

    def download_route(self, req: Request) -> tuple[int, dict[str, str], bytes] | None:
        """The download endpoints (see the module docstring); None for any other request."""
        segments = [unquote(part) for part in req.raw_path.strip("/").split("/")]
        if len(segments) >= 5 and segments[0] == "api" and segments[1] == "models" and segments[4] in ("revision", "tree"):
            repo_id, verb, rest = f"{segments[2]}/{segments[3]}", segments[4], segments[5:]
        elif len(segments) >= 5 and segments[2] == "resolve":
            repo_id, verb, rest = f"{segments[0]}/{segments[1]}", "resolve", segments[3:]
        else:
            return None
        repo = self.models.get(repo_id)
        if repo is None:
            return self._error(404 if self._user(req) else 401, "RepoNotFound", "Repository not found")
        revision = rest[0] if rest else "main"
        sha = repo.commit_of(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = repo.commits[sha]
        if verb == "revision":
            info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "disabled": False,
                    "gated": "manual" if repo.gated else False, "tags": [], "downloads": 0, "likes": 0,
                    "siblings": [{"rfilename": name} for name in sorted(files)]}
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        if verb == "tree":
            prefix = "/".join(rest[1:])
            entries, folders = [], set()
            for name in sorted(files):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                content = files[name]
                entry = {"type": "file", "oid": _git_blob_sha(content), "size": len(content), "path": name}
                if _is_lfs(name, content):
                    entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
                entries.append(entry)
                parts = name.split("/")[:-1]
                folders |= {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}
            entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "path": f}
                        for f in sorted(folders) if not prefix or f.startswith(prefix + "/")]
            return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()
        name = "/".join(rest[1:])
        user = self._user(req)
        if repo.gated and user not in repo.granted:
            return self._error(403 if user else 401, "GatedRepo",
                               f"Access to model {repo_id} is restricted. You must have access to it and be "
                               "authenticated to access it. Please log in.")
        if name not in files:
            return self._error(404, "EntryNotFound", f"{name} does not exist on \"{revision}\"", sha)
        content = files[name]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha(content)}"',
                   "Content-Type": "application/octet-stream"}
        if _is_lfs(name, content):
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(content).hexdigest()}"',
                            "X-Linked-Size": str(len(content))})
        return 200, headers, content

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
