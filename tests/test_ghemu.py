"""The GitHub emulator: validation against GitHub's description, auth, faults, git-backed data."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import ghemu
import jwt
import pytest
import requests
from conftest import GitRepo
from github import Auth, Github, GithubException, GithubIntegration

REPO = "octo/demo"
SHA = "a" * 40


def http(
    emu: ghemu.GitHubEmulator,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    kwargs.setdefault("timeout", 10)
    headers = {"Authorization": f"token {token or emu.token}"}
    return requests.request(method, emu.base_url + path, json=body, headers=headers, **kwargs)


def client(emu: ghemu.GitHubEmulator, **kwargs: Any) -> Github:
    kwargs.setdefault("auth", Auth.Token(emu.token))
    return Github(
        base_url=emu.base_url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
        **kwargs,
    )


# -- validation against the description


def test_every_example_of_the_description_validates() -> None:
    # The validator itself: GitHub's own examples must pass their own schemas.
    spec = ghemu.load_spec()
    pairs = {
        "check-run": "check-run",
        "commit-comparison": "commit-comparison",
        "full-repository-default-response": "full-repository",
        "pull-request": "pull-request",
        "release": "release",
        "installation-token": "installation-token",
        "issue-comment": "issue-comment",
        "git-ref": "git-ref",
        "status": "status",
    }
    for example, schema in pairs.items():
        value = spec.doc["components"]["examples"][example]["value"]
        assert spec.errors(f"/components/schemas/{schema}", value) == [], example


def test_the_response_validator_catches_a_bad_object() -> None:
    spec = ghemu.load_spec()
    run = spec.doc["components"]["examples"]["check-run"]["value"]
    assert spec.errors("/components/schemas/check-run", {**run, "conclusion": None}) == []
    bad = {**run, "conclusion": "passed", "started_at": "yesterday"}
    del bad["head_sha"]
    errors = spec.errors("/components/schemas/check-run", bad)
    assert any("'passed' is not one of" in e for e in errors)
    assert any("'yesterday' is not a 'date-time'" in e for e in errors)
    assert any("'head_sha' is a required property" in e for e in errors)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"name": "dlgate/x", "head_sha": SHA, "status": "done"}, "'done' is not one of"),
        ({"head_sha": SHA}, "'name' is a required property"),
        ({"name": "x", "head_sha": SHA, "status": "completed"}, "'conclusion' is a required"),
        (
            {"name": "x", "head_sha": SHA, "output": {"title": "t", "summary": "s" * 65_536}},
            "is too long",
        ),
        (
            {
                "name": "x",
                "head_sha": SHA,
                "output": {
                    "title": "t",
                    "summary": "s",
                    "annotations": [
                        {"path": "a", "start_line": 1, "end_line": 1,
                         "annotation_level": "notice", "message": "m"}
                    ] * 51,
                },
            },
            "is too long",
        ),
        ({"name": "x", "head_sha": "not-a-sha"}, "No commit found for SHA"),
    ],
)  # fmt: skip
def test_a_bad_request_is_refused_and_recorded(
    github: ghemu.GitHubEmulator, body: Any, complaint: str
) -> None:
    github.add_repo(REPO)
    r = http(github, "POST", f"/repos/{REPO}/check-runs", body)
    assert r.status_code == 422
    (violation,) = github.take_violations()
    assert (violation.method, violation.path) == ("POST", f"/repos/{REPO}/check-runs")
    assert complaint in violation.message
    assert complaint in r.json()["message"]
    assert github.check_runs(REPO) == []  # nothing was created


def test_bad_query_parameters_and_unknown_routes_are_violations(
    github: ghemu.GitHubEmulator,
) -> None:
    github.add_repo(REPO)
    r = http(github, "GET", f"/repos/{REPO}/commits/{SHA}/check-runs", params={"filter": "new"})
    assert r.status_code == 422
    assert http(github, "GET", f"/repos/{REPO}/check-suites").status_code == 404
    r = http(github, "POST", f"/repos/{REPO}/statuses/{SHA}", data=b"{not json")
    assert r.status_code == 400
    messages = [v.message for v in github.take_violations()]
    assert "'new' is not one of ['latest', 'all']" in messages[0]
    assert "not an operation of the described API" in messages[1]
    assert "body is not JSON" in messages[2]


def test_unclaimed_violations_fail_the_test_at_exit() -> None:
    emu = ghemu.GitHubEmulator().start()
    emu.add_repo(REPO)
    http(emu, "POST", f"/repos/{REPO}/check-runs", {"head_sha": SHA})
    with pytest.raises(AssertionError, match="'name' is a required property"):
        emu.__exit__(None, None, None)


def test_check_run_lifecycle_through_pygithub(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    repo = client(github, lazy=True).get_repo(REPO)  # lazy: no GET of the commit (no git_dir)
    run = repo.create_check_run("dlgate/data", SHA, status="in_progress", external_id="e1")
    annotation = {"path": "a.py", "start_line": 2, "end_line": 2, "annotation_level": "warning",
                  "message": "m", "title": "t"}  # fmt: skip
    run.edit(
        conclusion="failure",
        output={"title": "T", "summary": "S", "text": "X", "annotations": [annotation] * 50},
    )
    run.edit(output={"summary": "S", "annotations": [annotation] * 30})
    again = repo.get_check_run(run.id)
    assert (again.status, again.conclusion, again.output.title) == ("completed", "failure", "T")
    assert again.output.annotations_count == 80
    assert len(list(again.get_annotations())) == 80  # paginated through Link headers
    listed = list(repo.get_commit(SHA).get_check_runs(check_name="dlgate/data"))
    assert [r.id for r in listed] == [run.id]
    assert github.count("GET", r".*/annotations") == 3  # 30 per page, PyGithub's default


def test_filter_latest_keeps_the_newest_run_of_each_name(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    for name in ("a", "a", "b"):
        http(github, "POST", f"/repos/{REPO}/check-runs", {"name": name, "head_sha": SHA})
    path = f"/repos/{REPO}/commits/{SHA}/check-runs"
    latest = http(github, "GET", path).json()
    assert latest["total_count"] == 2
    assert http(github, "GET", path, params={"filter": "all"}).json()["total_count"] == 3


# -- authentication


def test_tokens_and_permissions(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    github.add_repo("octo/other")
    body = {"name": "x", "head_sha": SHA}
    read_only = github.add_token(permissions={"checks": "read", "metadata": "read"})
    elsewhere = github.add_token(repos=["octo/other"])
    assert http(github, "POST", f"/repos/{REPO}/check-runs", body, "ghs_nope").status_code == 401
    r = http(github, "POST", f"/repos/{REPO}/check-runs", body, read_only)
    assert (r.status_code, r.json()["message"]) == (403, "Resource not accessible by integration")
    assert http(github, "POST", f"/repos/{REPO}/check-runs", body, elsewhere).status_code == 404
    ok = http(github, "GET", f"/repos/{REPO}", token=read_only)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit"] == "5000"
    assert int(ok.headers["x-ratelimit-remaining"]) < 5000


def test_a_github_app_gets_an_installation_token(github: ghemu.GitHubEmulator) -> None:
    private, public = ghemu.app_keypair()
    github.app_public_key, github.app_id = public, 4242
    github.add_repo(REPO, installation_id=77)
    app = Auth.AppAuth(4242, private)
    installation = GithubIntegration(auth=app, base_url=github.base_url).get_repo_installation(
        "octo", "demo"
    )
    assert installation.id == 77
    gh = client(github, auth=app.get_installation_auth(installation.id))
    assert gh.get_repo(REPO).create_check_run("dlgate/x", SHA).status == "queued"
    tokens = [r for r in github.requests if r.path.endswith("/access_tokens")]
    assert [r.status for r in tokens] == [201]


def test_a_bad_app_jwt_is_refused(github: ghemu.GitHubEmulator) -> None:
    private, public = ghemu.app_keypair()
    github.app_public_key = public
    github.add_repo(REPO)
    now = int(time.time())
    claims = {"iat": now - 60, "exp": now + 540, "iss": "1"}

    def post(token: str) -> requests.Response:
        return requests.post(
            f"{github.base_url}/app/installations/1/access_tokens",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    assert post(jwt.encode(claims, private, algorithm="RS256")).status_code == 201
    shared_secret = "a-shared-secret-of-at-least-32-bytes"
    assert post(jwt.encode(claims, shared_secret, "HS256")).status_code == 401
    assert post(jwt.encode({**claims, "exp": now + 3600}, private, "RS256")).status_code == 401
    assert post(jwt.encode({**claims, "iss": "2"}, private, "RS256")).status_code == 401
    assert post("not.a.jwt").status_code == 401
    r = http(github, "GET", f"/repos/{REPO}/installation")  # a token where a JWT is needed
    assert r.status_code == 401


# -- faults


def test_rate_limit_faults_carry_retry_after(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    github.faults(rate=1.0, kinds=("429", "403-secondary"), retry_after=3, times=2)
    answers = [http(github, "GET", f"/repos/{REPO}") for _ in range(3)]
    assert sorted(r.status_code for r in answers[:2]) in ([403, 429], [403, 403], [429, 429])
    for r in answers[:2]:
        assert r.headers["retry-after"] == "3"
        assert "secondary rate limit" in r.json()["message"]
    assert answers[2].status_code == 200


def test_faults_are_reproducible_from_the_seed(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)

    def run(seed: int) -> list[int]:
        github.faults(rate=0.5, kinds=("500", "502"), seed=seed)
        return [http(github, "GET", f"/repos/{REPO}").status_code for _ in range(20)]

    first = run(3)
    assert first == run(3)
    assert {500, 502, 200} <= set(first)
    github.clear_faults()
    assert http(github, "GET", f"/repos/{REPO}").status_code == 200


def test_a_lost_response_still_changes_state(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    github.faults(rate=1.0, kinds=("lost",), times=1)
    with pytest.raises(requests.ConnectionError):
        http(github, "POST", f"/repos/{REPO}/check-runs", {"name": "x", "head_sha": SHA})
    assert len(github.check_runs(REPO)) == 1
    assert github.injected[0].status == 0


def test_pygithub_default_retry_duplicates_a_lost_post(github: ghemu.GitHubEmulator) -> None:
    # Why the publisher switches urllib3's retries off: GithubRetry resends the POST.
    github.add_repo(REPO)
    gh = Github(
        base_url=github.base_url,
        auth=Auth.Token(github.token),
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )
    github.faults(rate=1.0, kinds=("lost",), match="POST", times=1)
    gh.get_repo(REPO).create_check_run("dlgate/x", SHA, external_id="once")
    assert len(github.check_runs(REPO)) == 2


def test_a_slow_answer_times_the_client_out(github: ghemu.GitHubEmulator) -> None:
    github.add_repo(REPO)
    github.faults(rate=1.0, kinds=("timeout",), delay_s=1.0, times=1)
    with pytest.raises(requests.Timeout):
        http(github, "GET", f"/repos/{REPO}", timeout=0.3)


# -- git-backed endpoints


@pytest.fixture
def served(git_repo: GitRepo, github: ghemu.GitHubEmulator) -> GitRepo:
    git_repo.write("dlgate.yml", "stages: [changes]\n")
    git_repo.write("model.py", "x = 1\n")
    git_repo.commit("base")
    git_repo.branch("feature")
    git_repo.write("model.py", "x = 2\ny = 3\n")
    git_repo.write("data/0/a.png", b"\x89PNG\x00")
    git_repo.mv("dlgate.yml", "config/dlgate.yml")
    git_repo.commit("change")
    git_repo.checkout("main")
    git_repo.write("README.md", "hi\n")
    git_repo.commit("main moves on")
    github.add_repo(REPO, git_dir=git_repo.path)
    github.add_pull(REPO, 7, head="feature", base="main", title="Retrain")
    return git_repo


def test_pull_request_and_its_files(github: ghemu.GitHubEmulator, served: GitRepo) -> None:
    pr = client(github).get_repo(REPO).get_pull(7)
    assert (pr.number, pr.title, pr.head.ref, pr.base.ref) == (7, "Retrain", "feature", "main")
    assert pr.head.sha == served.sha("feature")
    assert (pr.changed_files, pr.commits, pr.additions, pr.deletions) == (3, 1, 2, 1)
    files = {f.filename: (f.status, f.previous_filename) for f in pr.get_files()}
    assert files == {
        "config/dlgate.yml": ("renamed", "dlgate.yml"),
        "data/0/a.png": ("added", None),
        "model.py": ("modified", None),
    }


def test_compare(github: ghemu.GitHubEmulator, served: GitRepo) -> None:
    cmp = client(github).get_repo(REPO).compare("main", "feature")
    assert (cmp.status, cmp.ahead_by, cmp.behind_by) == ("diverged", 1, 1)
    assert [c.sha for c in cmp.commits] == [served.sha("feature")]
    assert cmp.merge_base_commit.sha == served.sha("main~1")
    assert cmp.commits[0].commit.message == "change"


def test_contents_refs_and_missing_paths(github: ghemu.GitHubEmulator, served: GitRepo) -> None:
    repo = client(github).get_repo(REPO)
    config = repo.get_contents("dlgate.yml", ref="main")
    assert not isinstance(config, list)
    assert config.decoded_content == b"stages: [changes]\n"
    listing = repo.get_contents("data/0", ref="feature")
    assert isinstance(listing, list)
    assert [c.path for c in listing] == ["data/0/a.png"]
    with pytest.raises(GithubException) as missing:
        repo.get_contents("dlgate.yml", ref="feature")  # moved away on the branch
    assert missing.value.status == 404
    assert repo.get_git_ref("heads/feature").object.sha == served.sha("feature")


def test_comments_statuses_releases(github: ghemu.GitHubEmulator, served: GitRepo) -> None:
    repo = client(github).get_repo(REPO)
    pr = repo.get_pull(7)
    comment = pr.create_issue_comment("dlgate: refused")
    comment.edit("dlgate: passed")
    assert [c.body for c in pr.get_issue_comments()] == ["dlgate: passed"]
    assert github.comments(REPO, 7)[0]["user"]["login"] == "github-actions[bot]"
    repo.get_commit(served.sha("feature")).create_status("success", context="dlgate")
    assert [s["state"] for s in github.statuses(REPO)] == ["success"]
    release = repo.create_git_release("v1.0.0", "v1.0.0", "first")
    assert repo.get_release("v1.0.0").id == release.id
    assert served.sha("v1.0.0") == served.sha("main")  # GitHub tags target_commitish
    with pytest.raises(GithubException) as duplicate:
        repo.create_git_release("v1.0.0", "again", "")
    assert duplicate.value.status == 422
    assert github.take_violations() == []  # a conflict is GitHub's answer, not a client bug


def test_check_runs_name_the_pull_requests_they_belong_to(
    github: ghemu.GitHubEmulator, served: GitRepo
) -> None:
    r = http(
        github,
        "POST",
        f"/repos/{REPO}/check-runs",
        {"name": "dlgate/changes", "head_sha": served.sha("feature")},
    )
    assert [p["number"] for p in r.json()["pull_requests"]] == [7]
    content = http(github, "GET", f"/repos/{REPO}/contents/model.py", params={"ref": "feature"})
    assert base64.b64decode(content.json()["content"]) == b"x = 2\ny = 3\n"
    assert json.loads(content.content)["encoding"] == "base64"
