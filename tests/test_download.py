"""Downloads: manifest selection, resumable verified HTTP downloads, model snapshots.

Every server runs on 127.0.0.1 (see ``_http_fixtures``); nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from _http_fixtures import FakeHub, FileServer, serving

from fmriscaling import download as dl
from fmriscaling._utils import ConfigError, DataError

MANIFEST = Path(__file__).resolve().parents[1] / "config" / "datasets" / "ds003020_manifest.tsv"
FAST = {"backoff": 0.0, "timeout": 5}


@pytest.fixture
def server():
    with serving(FileServer()) as srv:
        yield srv


@pytest.fixture
def payload(rng) -> bytes:
    return rng.integers(0, 256, size=100_000, dtype="uint8").tobytes()


def _fetch(server: FileServer, path: str, data: bytes, dest: Path, **kwargs) -> Path:
    md5 = kwargs.pop("md5", hashlib.md5(data).hexdigest())
    return dl.download_file(
        f"{server.url}/{path}", dest, size=len(data), md5=md5, relpath=path, **FAST, **kwargs
    )


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# --------------------------------------------------------------------------- download_file


def test_good_file(server, payload, tmp_path):
    md5 = server.add("derivative/a.hf5", payload)
    dest = tmp_path / "derivative" / "a.hf5"
    out = dl.download_file(
        f"{server.url}/derivative/a.hf5", dest, size=len(payload), md5=md5, **FAST
    )
    assert out == dest
    assert dest.read_bytes() == payload
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5
    assert not _part(dest).exists()
    assert server.requests == [("derivative/a.hf5", None)]


def test_wrong_md5_removes_everything(server, payload, tmp_path):
    md5 = server.add("sub/b.hf5", payload, mode="corrupt")
    got = hashlib.md5(bytes(b ^ 0xFF for b in payload)).hexdigest()
    dest = tmp_path / "b.hf5"
    with pytest.raises(DataError, match="md5") as info:
        _fetch(server, "sub/b.hf5", payload, dest)
    message = str(info.value)
    assert "sub/b.hf5" in message and md5 in message and got in message
    assert not dest.exists()
    assert not _part(dest).exists()


def test_truncated_body_fails_after_retries(server, payload, tmp_path):
    server.add("t.hf5", payload, mode="truncate", cut=30_000)
    dest = tmp_path / "t.hf5"
    with pytest.raises(DataError, match=r"after 3 attempts.*30000 of 100000") as info:
        _fetch(server, "t.hf5", payload, dest, retries=2)
    assert "t.hf5" in str(info.value)
    assert not dest.exists()
    assert server.count("t.hf5") == 3
    # each retry asked for the bytes it did not have
    assert [r for _, r in server.requests] == [None, "bytes=30000-", "bytes=30000-"]
    # the bytes received are kept: the next run resumes from them
    assert _part(dest).read_bytes() == payload[:30_000]
    server.modes["t.hf5"] = "ok"
    _fetch(server, "t.hf5", payload, dest)
    assert dest.read_bytes() == payload and not _part(dest).exists()
    assert server.requests[-1] == ("t.hf5", "bytes=30000-")


def test_dropped_connection_resumes_with_range(server, payload, tmp_path):
    cut = 40 * 1024  # a multiple of chunk_size: every byte before the drop reaches the disk
    server.add("d.hf5", payload, mode="drop_once", cut=cut)
    dest = tmp_path / "d.hf5"
    _fetch(server, "d.hf5", payload, dest, chunk_size=1024)
    assert dest.read_bytes() == payload
    assert not _part(dest).exists()
    assert [r for _, r in server.requests] == [None, f"bytes={cut}-"]


def test_resumes_part_left_by_an_earlier_run(server, payload, tmp_path):
    server.add("r.hf5", payload)
    dest = tmp_path / "r.hf5"
    _part(dest).write_bytes(payload[:12_345])
    _fetch(server, "r.hf5", payload, dest)
    assert dest.read_bytes() == payload
    assert server.requests == [("r.hf5", "bytes=12345-")]


def test_server_ignoring_range_restarts_from_zero(server, payload, tmp_path):
    server.add("i.hf5", payload, mode="ignore_range")
    dest = tmp_path / "i.hf5"
    _part(dest).write_bytes(payload[:5000])
    _fetch(server, "i.hf5", payload, dest)
    assert dest.read_bytes() == payload
    assert server.requests == [("i.hf5", "bytes=5000-")]


def test_oversized_part_restarts(server, payload, tmp_path):
    server.add("o.hf5", payload)
    dest = tmp_path / "o.hf5"
    _part(dest).write_bytes(payload + b"junk")
    _fetch(server, "o.hf5", payload, dest)
    assert dest.read_bytes() == payload
    assert server.requests == [("o.hf5", None)]


def test_server_error_is_retried(server, payload, tmp_path):
    server.add("e.hf5", payload, mode="500_once")
    dest = tmp_path / "e.hf5"
    _fetch(server, "e.hf5", payload, dest)
    assert dest.read_bytes() == payload
    assert server.count("e.hf5") == 2


def test_404_fails_without_retry(server, payload, tmp_path):
    server.add("derivative/missing.hf5", payload, mode="404")
    dest = tmp_path / "missing.hf5"
    _part(dest).write_bytes(payload[:100])  # from a run against the right server
    with pytest.raises(DataError, match="HTTP 404") as info:
        _fetch(server, "derivative/missing.hf5", payload, dest, retries=3)
    message = str(info.value)
    assert f"{server.url}/derivative/missing.hf5" in message
    assert "derivative/missing.hf5:" in message and "base_url" in message
    assert server.count("derivative/missing.hf5") == 1
    assert not dest.exists()
    assert _part(dest).read_bytes() == payload[:100]


def test_git_annex_pointer_is_refused(server, payload, tmp_path):
    server.add("p.hf5", payload, mode="annex")
    dest = tmp_path / "p.hf5"
    with pytest.raises(DataError, match="git-annex pointer"):
        _fetch(server, "p.hf5", payload, dest)
    assert not dest.exists() and not _part(dest).exists()
    assert server.count("p.hf5") == 1


@pytest.mark.parametrize("mode", ["html", "html_sniff"])
def test_html_error_page_is_refused(server, payload, tmp_path, mode):
    server.add("h.hf5", payload, mode=mode)
    dest = tmp_path / "h.hf5"
    with pytest.raises(DataError, match="HTML page") as info:
        _fetch(server, "h.hf5", payload, dest)
    assert "h.hf5" in str(info.value)
    assert not dest.exists() and not _part(dest).exists()


def test_existing_complete_file_is_skipped(server, payload, tmp_path):
    server.add("s.hf5", payload)
    dest = tmp_path / "s.hf5"
    dest.write_bytes(payload)
    _fetch(server, "s.hf5", payload, dest, verify_existing=True)
    assert server.requests == []


def test_existing_wrong_file_is_replaced(server, payload, tmp_path):
    server.add("w.hf5", payload)
    dest = tmp_path / "w.hf5"
    dest.write_bytes(b"\0" * len(payload))  # right size, wrong content
    _fetch(server, "w.hf5", payload, dest)  # size only: trusted
    assert server.requests == []
    _fetch(server, "w.hf5", payload, dest, verify_existing=True)
    assert dest.read_bytes() == payload
    assert server.count("w.hf5") == 1


def test_log_line_reports_speed(server, payload, tmp_path, caplog):
    server.add("l.hf5", payload)
    with caplog.at_level(logging.INFO, logger="fmriscaling.download"):
        _fetch(server, "l.hf5", payload, tmp_path / "l.hf5")
    assert any("MB/s" in r.getMessage() and "l.hf5" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- download_many


def _manifest(entries: dict[str, bytes]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": list(entries),
            "size": [len(v) for v in entries.values()],
            "md5": [hashlib.md5(v).hexdigest() for v in entries.values()],
        }
    )


def test_download_many_keeps_good_files_and_lists_bad(server, rng, tmp_path):
    data = {f"derivative/preprocessed_data/UTS01/s{i}.hf5": rng.bytes(20_000 + i) for i in range(4)}
    for path, blob in data.items():
        server.add(path, blob)
    bad = "derivative/preprocessed_data/UTS01/s2.hf5"
    server.modes[bad] = "corrupt"
    with pytest.raises(DataError, match="1 of 4 download") as info:
        dl.download_many(
            server.url, list(data), tmp_path, _manifest(data), workers=3, progress=False, **FAST
        )
    message = str(info.value)
    assert bad in message and "md5" in message
    assert sum(p in message for p in data) == 1
    for path, blob in data.items():
        if path == bad:
            assert not (tmp_path / path).exists()
            assert not (tmp_path / (path + ".part")).exists()
        else:
            assert (tmp_path / path).read_bytes() == blob

    # a rerun fetches only the missing file
    server.modes[bad] = "ok"
    server.requests.clear()
    out = dl.download_many(server.url, list(data), tmp_path, _manifest(data), progress=False)
    assert out == [tmp_path / p for p in data]
    assert server.requests == [(bad, None)]


def test_download_many_quotes_odd_names(server, tmp_path):
    path = "derivative/pycortex-db/UTS01/anatomicals/voxelize[surf=pia].nii.gz"
    data = {path: b"\x1f\x8b" + b"x" * 300}
    server.add(path, data[path])
    dl.download_many(server.url, [path], tmp_path, _manifest(data), progress=False)
    assert (tmp_path / path).read_bytes() == data[path]


def test_download_many_rejects_paths_outside_the_manifest(tmp_path):
    manifest = _manifest({"derivative/respdict.json": b"{}"})
    with pytest.raises(DataError, match=r"not in .*respdict\.jsn"):
        dl.download_many("http://127.0.0.1:9", ["derivative/respdict.jsn"], tmp_path, manifest)


# --------------------------------------------------------------------------- manifest


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return dl.read_manifest(MANIFEST)


def test_read_manifest(manifest):
    assert list(manifest.columns) == ["path", "size", "md5"]
    assert manifest["size"].dtype == "int64"
    row = manifest.set_index("path").loc["derivative/preprocessed_data/UTS01/souls.hf5"]
    assert row["size"] == 230_399_888  # METHODS.md worked example
    assert manifest["path"].is_unique


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("# c\npath\tsize\n", "header"),
        ("path\tsize\tmd5\na\t12\n", r"line 2: expected 3"),
        ("path\tsize\tmd5\na\tbig\t" + "0" * 32 + "\n", "not an integer"),
        ("path\tsize\tmd5\na\t1\tnothex\n", "32 lowercase hex"),
        ("path\tsize\tmd5\na\t1\t" + "0" * 32 + "\na\t1\t" + "0" * 32 + "\n", "twice"),
    ],
)
def test_read_manifest_malformed(tmp_path, text, match):
    path = tmp_path / "m.tsv"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        dl.read_manifest(path)
    assert str(path) in str(info.value)


def test_read_manifest_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        dl.read_manifest(tmp_path / "nope.tsv")


def test_subjects_and_stories(manifest):
    assert dl.manifest_subjects(manifest) == [f"UTS{i:02d}" for i in range(1, 10)]
    uts01 = dl.manifest_stories(manifest, "UTS01")
    assert len(uts01) == 84 and "souls" in uts01 and "wheretheressmoke" in uts01
    assert len(dl.manifest_stories(manifest, "UTS09")) == 54
    assert "auditory_localizer" not in dl.manifest_stories(manifest)


def test_select_files_real_names(manifest):
    paths = dl.select_files(
        manifest,
        subjects=["UTS01"],
        stories=["souls", "wheretheressmoke"],
        kinds=["respdict", "responses", "textgrids", "audio"],
    )
    assert sorted(paths) == sorted(
        [
            "derivative/respdict.json",
            "derivative/preprocessed_data/UTS01/souls.hf5",
            "derivative/preprocessed_data/UTS01/wheretheressmoke.hf5",
            "derivative/TextGrids/souls.TextGrid",
            "derivative/TextGrids/wheretheressmoke.TextGrid",
            "stimuli/souls.wav",
            "stimuli/wheretheressmoke.wav",
        ]
    )
    assert set(paths) <= set(manifest["path"])
    assert dl.relpath_for("responses", subject="UTS01", story="souls") in paths


def test_select_files_all_stories_and_folders(manifest):
    responses = dl.select_files(manifest, subjects=["UTS01", "UTS02"], kinds=["responses"])
    assert len(responses) == 168
    textgrids = dl.select_files(manifest, subjects="UTS04", kinds=["textgrids"])
    assert len(textgrids) == len(dl.manifest_stories(manifest, "UTS04"))
    cortex = dl.select_files(manifest, subjects=["UTS02"], kinds=["pycortex"])
    assert "derivative/pycortex-db/UTS02/transforms/UTS02_auto/mask_thick.nii.gz" in cortex
    assert all(p.startswith("derivative/pycortex-db/UTS02/") for p in cortex)
    surfer = dl.select_files(manifest, subjects=["UTS03"], kinds=["freesurfer"])
    assert surfer and all(p.startswith("derivative/freesurfer_subjdir/UTS03/") for p in surfer)
    with pytest.raises(DataError, match="freesurfer_subjdir/UTS09"):
        dl.select_files(manifest, subjects=["UTS09"], kinds=["freesurfer"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subjects": ["UTS1"], "stories": "all"}, r"subject 'UTS1'.*did you mean 'UTS01'"),
        ({"subjects": ["UTS01"], "stories": ["soul"]}, r"story 'soul'.*did you mean 'souls'"),
        (
            {"subjects": ["UTS04"], "stories": ["afatherscover"]},
            r"UTS04 has no responses for afatherscover",
        ),
    ],
)
def test_select_files_unknown_names(manifest, kwargs, match):
    with pytest.raises(DataError, match=match):
        dl.select_files(manifest, kinds=["responses"], **kwargs)


def test_select_files_unknown_kind(manifest):
    with pytest.raises(ConfigError, match="did you mean 'textgrids'"):
        dl.select_files(manifest, subjects=["UTS01"], kinds=["textgrid"])


# --------------------------------------------------------------------------- CLI


def test_cli_dry_run_lists_real_files(capsys):
    status = dl.main(
        [
            "--manifest",
            str(MANIFEST),
            "--dest",
            "unused",
            "--subjects",
            "UTS01",
            "--stories",
            "souls",
            "--kinds",
            "responses",
            "textgrids",
            "--dry-run",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out.split() == [
        "derivative/TextGrids/souls.TextGrid",
        "derivative/preprocessed_data/UTS01/souls.hf5",
    ]


def test_cli_downloads_and_reports_errors(server, rng, tmp_path):
    data = {
        "derivative/respdict.json": b'{"souls": 375}',
        "derivative/preprocessed_data/UTS01/souls.hf5": rng.bytes(5000),
    }
    for path, blob in data.items():
        server.add(path, blob)
    manifest = tmp_path / "m.tsv"
    manifest.write_text(
        "# test\npath\tsize\tmd5\n"
        + "".join(f"{p}\t{len(b)}\t{hashlib.md5(b).hexdigest()}\n" for p, b in data.items())
    )
    argv = ["--base-url", server.url, "--manifest", str(manifest), "--dest", str(tmp_path / "ds")]
    argv += ["--subjects", "UTS01", "--kinds", "respdict", "responses", "--no-progress"]
    assert dl.main(argv) == 0
    for path, blob in data.items():
        assert (tmp_path / "ds" / path).read_bytes() == blob
    assert dl.main([*argv[:-5], "--subjects", "UTS02", "--kinds", "responses"]) == 1


# --------------------------------------------------------------------------- snapshot_model

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # conftest.py keeps huggingface_hub offline; this test talks to 127.0.0.1 only
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    files = {
        "config.json": json.dumps({"model_type": "gpt2", "n_layer": 2}).encode(),
        "model.safetensors": bytes(range(256)) * 40,
        "sub/tokenizer.json": b'{"version": "1.0"}',
        "README.md": b"# tiny\n",
    }
    with serving(FakeHub("acme/tiny-lm", SHA, files)) as srv:
        yield srv


def test_snapshot_model_pins_commit(hub, tmp_path, caplog):
    dest = tmp_path / "models" / "tiny"
    with caplog.at_level(logging.WARNING, logger="fmriscaling.download"):
        record = dl.snapshot_model(
            "acme/tiny-lm",
            "main",
            dest,
            endpoint=hub.url,
            allow_patterns=["*.json", "*.safetensors"],
        )
    assert any("branch or tag" in r.getMessage() for r in caplog.records)
    assert record["commit"] == SHA and record["revision"] == "main"
    assert record["files"] == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    for name in record["files"]:
        assert (dest / name).read_bytes() == hub.hub_files[name]
    assert not (dest / "README.md").exists()
    on_disk = json.loads((dest / dl.SNAPSHOT_RECORD).read_text())
    assert on_disk["commit"] == SHA and on_disk["repo_id"] == "acme/tiny-lm"
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]  # no staging folder left
    # the files were fetched at the resolved commit, never at the branch
    resolves = [p for _, p in hub.requests if "/resolve/" in p]
    assert resolves and all(f"/resolve/{SHA}/" in p for p in resolves)

    # same commit again: nothing to fetch beyond resolving the branch
    hub.requests.clear()
    again = dl.snapshot_model(
        "acme/tiny-lm", "main", dest, endpoint=hub.url, allow_patterns=["*.json", "*.safetensors"]
    )
    assert again["commit"] == SHA
    assert all("/resolve/" not in p for _, p in hub.requests)


def test_snapshot_model_commit_revision_needs_no_lookup(hub, tmp_path, caplog):
    dest = tmp_path / "tiny"
    with caplog.at_level(logging.WARNING, logger="fmriscaling.download"):
        record = dl.snapshot_model("acme/tiny-lm", SHA, dest, endpoint=hub.url)
    assert not any("branch or tag" in r.getMessage() for r in caplog.records)
    assert record["commit"] == SHA
    assert (dest / "README.md").read_bytes() == b"# tiny\n"
    assert not any("/revision/" in p for _, p in hub.requests)


@pytest.mark.parametrize("revision", ["main", SHA])
def test_snapshot_model_gated(hub, tmp_path, revision):
    hub.gated.add("acme/tiny-lm")
    dest = tmp_path / "tiny"
    with pytest.raises(DataError, match=r"licence.*HF_TOKEN"):
        dl.snapshot_model("acme/tiny-lm", revision, dest, endpoint=hub.url)
    assert not dest.exists() and not (tmp_path / ".tiny.part").exists()


def test_snapshot_model_gated_without_token_fails_before_any_request(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # HF_HOME (the fixture's) holds no login
    with pytest.raises(DataError, match=r"gated model .*no Hugging Face token.*HF_TOKEN"):
        dl.snapshot_model("acme/tiny-lm", SHA, tmp_path / "tiny", endpoint=hub.url, gated=True)
    assert hub.requests == []
    # with a token it goes to the hub (which serves this repository openly)
    record = dl.snapshot_model(
        "acme/tiny-lm", SHA, tmp_path / "tiny", endpoint=hub.url, gated=True, token="hf_x"
    )
    assert record["commit"] == SHA


def test_snapshot_model_refuses_foreign_dest(hub, tmp_path):
    dest = tmp_path / "tiny"
    dest.mkdir()
    (dest / "weights.bin").write_bytes(b"mine")
    with pytest.raises(DataError, match="remove it or choose another"):
        dl.snapshot_model("acme/tiny-lm", SHA, dest, endpoint=hub.url)
    assert (dest / "weights.bin").read_bytes() == b"mine"
