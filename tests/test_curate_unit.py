"""`synthdetect curate` pieces that need no pipeline run: feedback export from tags, accounting checks,
and the one-line error when MongoDB cannot be reached. Real FiftyOne + the bundled mongod, no mocks."""
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import CLI, stop_session

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


@pytest.fixture
def tiny_dataset(tmp_path):
    import fiftyone as fo

    from components.curation.app import ensure_database
    ensure_database()
    ds = fo.Dataset(f"synthdetect-test-unit-{uuid.uuid4().hex[:8]}")
    paths = [str(tmp_path / f"img{i}.jpg") for i in range(5)]
    ds.add_samples([fo.Sample(filepath=p, path=p, ground_truth=fo.Classification(label="real")) for p in paths])
    yield ds, paths
    ds.delete()


def _tag(ds, path, *tags):
    from fiftyone import ViewField as F
    ds.match(F("path") == path).tag_samples(list(tags))


def test_feedback_export_from_tags(tiny_dataset, tmp_path):
    from components.curation.feedback import export_feedback
    ds, paths = tiny_dataset
    _tag(ds, paths[3], "exclude")
    _tag(ds, paths[1], "relabel:synthesized")
    _tag(ds, paths[2], "exclude", "relabel:synthesized")   # exclude wins
    _tag(ds, paths[0], "quarantined", "false_positive")   # managed tags are not decisions
    out = tmp_path / "fb" / "feedback.jsonl"
    res = export_feedback(ds, str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"path": paths[1], "action": "relabel", "label": "synthesized"},
                    {"path": paths[2], "action": "exclude"},
                    {"path": paths[3], "action": "exclude"}]
    assert (res.excluded, res.relabeled, res.both) == (2, 1, 1)
    # the file is what ingestion reads
    from components.ingest.listing import read_feedback
    assert set(read_feedback(str(out))) == {paths[1], paths[2], paths[3]}


def test_feedback_rejects_bad_relabel_tags(tiny_dataset, tmp_path):
    from components.curation.feedback import export_feedback
    from components.curation.members import CurationError
    ds, paths = tiny_dataset
    _tag(ds, paths[0], "relabel:fake")
    _tag(ds, paths[1], "relabel:real", "relabel:synthesized")
    with pytest.raises(CurationError, match="2 samples have an invalid or conflicting relabel tag"):
        export_feedback(ds, str(tmp_path / "fb.jsonl"))
    assert not (tmp_path / "fb.jsonl").exists()


def test_accounting_mismatch_is_reported():
    from components.curation.members import CurationError, check_accounting
    members = [{"path": "a", "status": "written"}, {"path": "b", "status": "quarantined"}]
    check_accounting(members, {"inputs": 2, "written": 1, "quarantined": 1})
    with pytest.raises(CurationError, match="1 written members but written=2"):
        check_accounting(members, {"inputs": 2, "written": 2, "quarantined": 1})


def test_unreachable_mongodb_is_one_line_error(tmp_path):
    env = {**os.environ, "FIFTYONE_DATABASE_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=1500",
           "FIFTYONE_DO_NOT_TRACK": "true"}
    out = subprocess.run([CLI, "curate", "--config", str(REPO / "configs" / "local.yaml"),
                          "--examples", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=REPO, env=env)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot start or reach the MongoDB at FIFTYONE_DATABASE_URI"), out.stderr
    assert "Traceback" not in out.stderr


def test_missing_mongod_library_hint_names_libssl_and_uri():
    from components.curation.app import MONGO_HINT
    assert "libssl1.1" in MONGO_HINT and "FIFTYONE_DATABASE_URI" in MONGO_HINT


def test_curation_media_cache_honours_synthdetect_cache(monkeypatch, tmp_path):
    """gs:// images for the App go into the one cache that predict's models use."""
    from components.cache import cache_dir
    from components.curation.members import default_cache_dir
    monkeypatch.setenv("SYNTHDETECT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == str(tmp_path / "c" / "media") == str(cache_dir("media"))
    monkeypatch.delenv("SYNTHDETECT_CACHE")
    assert default_cache_dir() == os.path.expanduser("~/.cache/synthdetect/media")


@pytest.fixture
def embedded_dataset(tiny_dataset):
    """40 samples with labels, predictions and 64-d embeddings from a fixed random generator."""
    import fiftyone as fo
    import numpy as np
    ds, _ = tiny_dataset
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/x{i}.jpg", path=f"/nonexistent/x{i}.jpg", source="s",
                              ground_truth=fo.Classification(label="real" if i % 2 else "synthesized"),
                              prediction=fo.Classification(label="real", confidence=0.5 + i / 100))
                    for i in range(35)], progress=False)
    emb = np.random.default_rng(0).normal(size=(len(ds), 64)).astype(np.float32)
    return ds, ds.values("id"), [str(i).encode() for i in range(len(ds))], emb


def test_embeddings_map_and_similarity_index_are_reused_when_nothing_changed(embedded_dataset):
    from components.curation import brain
    ds, ids, images, emb = embedded_dataset
    calls = []

    def embed(batch):
        calls.append(len(batch))
        return emb
    first = brain.update_embeddings(ds, ids, images, embed, fingerprint="a")
    assert (first.embeddings, first.map, first.similarity) == ("computed",) * 3 and calls == [len(ids)]
    assert {brain.MAP_KEY, brain.SIMILARITY_KEY} <= set(ds.list_brain_runs())
    stamps = {k: ds.get_brain_info(k).timestamp for k in (brain.MAP_KEY, brain.SIMILARITY_KEY)}
    again = brain.update_embeddings(ds, ids, images, embed, fingerprint="a")
    assert (again.embeddings, again.map, again.similarity) == ("reused",) * 3 and calls == [len(ids)]
    assert "not recomputed" in again.line()
    assert {k: ds.get_brain_info(k).timestamp for k in stamps} == stamps
    pca = brain.update_embeddings(ds, ids, images, embed, fingerprint="a", method="pca")   # only the map changes
    assert (pca.embeddings, pca.map) == ("reused", "computed") and calls == [len(ids)]
    assert ds.get_brain_info(brain.MAP_KEY).config.method == "pca"
    changed = brain.update_embeddings(ds, ids, images, embed, fingerprint="b", method="pca")
    assert changed.embeddings == "computed" and calls == [len(ids)] * 2


def test_similarity_index_finds_the_planted_near_duplicate(embedded_dataset):
    import numpy as np

    from components.curation import brain
    ds, ids, images, emb = embedded_dataset
    emb[7] = emb[20] + np.random.default_rng(1).normal(scale=0.05, size=emb.shape[1])
    brain.update_embeddings(ds, ids, images, lambda batch: emb, fingerprint="a")
    nearest = ds.sort_by_similarity(ids[20], k=2, brain_key=brain.SIMILARITY_KEY).values("id")
    assert nearest == [ids[20], ids[7]]
    stored = np.asarray(ds.select(ids, ordered=True).values(brain.EMBEDDING_FIELD))
    assert np.allclose(stored, emb)


def test_mistakenness_ranks_confident_disagreement_first(embedded_dataset):
    import fiftyone as fo

    from components.curation import brain
    ds, ids, _, _ = embedded_dataset
    planted = ds[ids[0]]   # one of tiny_dataset's unscored samples: labelled synthesized, the model sure it is real
    planted.ground_truth = fo.Classification(label="synthesized")
    planted.prediction = fo.Classification(label="real", confidence=0.99)
    planted.save()
    assert brain.compute_mistakenness(ds) == len(ds.exists("prediction")) == 36
    ranked = ds.exists(brain.MISTAKENNESS_FIELD).sort_by(brain.MISTAKENNESS_FIELD, reverse=True).values("id")
    assert ranked[0] == ids[0]
    agree = ds.match({"ground_truth.label": "real"}).exists(brain.MISTAKENNESS_FIELD).values(brain.MISTAKENNESS_FIELD)
    assert max(agree) < 0.5 < ds[ids[0]][brain.MISTAKENNESS_FIELD]


def test_app_config_is_saved_with_the_dataset(embedded_dataset):
    import fiftyone as fo

    from components.curation import appconfig, brain
    ds, ids, images, emb = embedded_dataset
    brain.update_embeddings(ds, ids, images, lambda batch: emb, fingerprint="a")
    brain.compute_mistakenness(ds)
    appconfig.configure(ds)
    stored = fo.core.odm.get_db_conn().datasets.find_one({"name": ds.name})["app_config"]   # what the App reads
    groups = {g["name"]: g["paths"] for g in stored["sidebar_groups"]}
    assert list(groups)[:4] == ["tags", "labels", "model", "provenance"]
    assert groups["labels"] == ["ground_truth", "prediction"] and groups["provenance"] == ["source", "path"]
    assert groups["model"] == [brain.MISTAKENNESS_FIELD]
    assert "source" not in groups.get("primitives", []) and "duplicates" not in groups   # no such fields here
    fresh = fo.load_dataset(ds.name)
    fresh.reload()
    colors = {f["path"]: f["fieldColor"] for f in fresh.app_config.color_scheme.fields}
    assert colors["ground_truth"] != colors["prediction"]
    space = fresh.load_workspace(appconfig.WORKSPACE)
    assert [p.type for p in space.children] == ["Samples", "Embeddings"]
    assert space.children[1].state["brainResult"] == brain.MAP_KEY
    assert space.active_child == space.children[0].component_id
    # the map opens coloured by label (the classic panel's state key and 1.22's), labels by value
    assert space.children[1].state["colorByField"] == space.children[1].state["colorField"] == "ground_truth.label"
    assert fresh.app_config.color_scheme.color_by == "value"
    for f in fresh.app_config.color_scheme.fields:
        assert {v["value"]: v["color"] for v in f["valueColors"]} == appconfig.LABEL_COLORS


def test_the_map_is_drawn_coloured_by_label(embedded_dataset, tmp_path):
    """Issue 27.3: a static picture of the embeddings map for people who do not open the App."""
    import numpy as np
    from PIL import Image

    from components.curation import appconfig, brain
    ds, ids, images, emb = embedded_dataset
    assert brain.write_map_png(ds, str(tmp_path / "none.png")) is None   # no map yet: nothing drawn
    brain.update_embeddings(ds, ids, images, lambda batch: emb, fingerprint="a", method="pca")
    path = brain.write_map_png(ds, str(tmp_path / "maps" / "map.png"))
    assert path == str(tmp_path / "maps" / "map.png") and not list((tmp_path / "maps").glob("*.tmp-*"))
    rgb = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    for label, color in appconfig.LABEL_COLORS.items():   # dots of both labels, in the App's colours
        want = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(rgb - want).sum(axis=1) < 40).sum() > 50, label


def test_archive_members_are_materialised_for_the_app_and_duplicates_re_read(tmp_path):
    """Members of an archive (members.jsonl path archive/member) get a media file in the curation
    cache with the member's bytes, without extracting the archive; a duplicate inside an archive is
    re-decoded exactly as ingestion did."""
    import zipfile

    from components.curation.dataset import _duplicate_image
    from components.curation.members import local_media
    from schemas.config import IngestConfig
    from tests.conftest import image_bytes
    from tests.helpers import write_tar
    data = image_bytes(seed=3)
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as z:
        z.writestr("sub/a.jpg", data)
    write_tar(tmp_path / "p.tgz", {"b.jpg": data})
    cache = tmp_path / "cache"
    for path in (f"{tmp_path}/p.zip/sub/a.jpg", f"{tmp_path}/p.tgz/b.jpg"):
        local = local_media(path, str(cache))
        assert local.startswith(str(cache)) and local.endswith(".jpg") and Path(local).read_bytes() == data
        raw, meta = _duplicate_image({"path": path, "label": "real"}, {"options": IngestConfig().model_dump()})
        assert raw and meta["orig_format"] == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "p.tgz", "p.zip"]   # nothing extracted
    missing = local_media(f"{tmp_path}/p.zip/nope.jpg", str(cache))   # not a member: shown as broken media
    assert not os.path.exists(missing)


# ------------------------------------------------------------------ the App on a busy machine (26.1)
def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(name: str, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true", "TF_USE_LEGACY_KERAS": "1"}
    return subprocess.Popen([CLI, "curate", "--name", name, "--launch", "--port", str(port), *extra], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(app: subprocess.Popen) -> str:
    import signal
    if app.poll() is None:
        app.send_signal(signal.SIGTERM)
    try:
        _, err = app.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(app.pid, signal.SIGKILL)
        _, err = app.communicate()
    return err


def test_the_app_starts_beside_two_busy_processes(tiny_dataset, cpu_hog):
    """FiftyOne waits a fixed 60 s for its server to listen; on a loaded machine (here: whatever else
    runs plus two busy processes) that was not enough (ServiceListenTimeout). Now the wait follows
    the load, says how it goes, and retries."""
    import socket
    import time

    import requests
    import threading
    ds, _ = tiny_dataset
    port = _free_port()
    assert all(h.poll() is None for h in cpu_hog)
    app = _launch(ds.name, port)
    # the command's stderr as it comes: the App server can answer before the command says it serves
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(app.stderr), daemon=True)
    reader.start()
    serving = f"FiftyOne App serving dataset {ds.name!r}"
    try:
        deadline = time.time() + 840
        while time.time() < deadline and app.poll() is None and not any(serving in ln for ln in lines):
            time.sleep(1)
        assert app.poll() is None, "".join(lines)[-3000:]
        assert any(serving in ln for ln in lines), "".join(lines)[-3000:]
        answered = None
        for _ in range(60):   # the server answers once it has finished starting
            try:
                answered = requests.get(f"http://127.0.0.1:{port}/fiftyone", timeout=30).json()
                break
            except (requests.RequestException, ValueError):
                time.sleep(2)
        assert answered and "version" in answered
    finally:
        stop_session(app, timeout=120)
        reader.join(timeout=30)
    err = "".join(lines)
    assert "Traceback" not in err and "ServiceListenTimeout" not in err, err[-3000:]
    assert "FiftyOne App stopped" in err, err[-3000:]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the App server outlived the command"


def test_an_app_that_cannot_start_in_time_is_one_line_saying_what_to_do(tiny_dataset):
    ds, _ = tiny_dataset
    port = _free_port()
    app = _launch(ds.name, port, "--start-timeout", "0.2")
    app.wait(timeout=600)
    err = app.stderr.read()
    lines = err.strip().splitlines()
    assert app.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert lines[-1].startswith(f"error: the FiftyOne App server did not listen on 127.0.0.1:{port} within 0.2 s "
                                "(2 attempts;"), err
    assert "--start-timeout SECONDS" in lines[-1] and "SYNTHDETECT_APP_START_TIMEOUT" in lines[-1]
    assert any("trying again" in line for line in lines[:-1])   # the retry, announced
    import socket
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "a server of a failed attempt kept the port"


def test_a_port_in_use_by_another_program_is_one_line(tiny_dataset):
    import socket
    ds, _ = tiny_dataset
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        app = _launch(ds.name, port)
        app.wait(timeout=600)
        err = app.stderr.read()
    assert app.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is in use by another program; "
                                        "choose another --port"], err


def test_the_label_error_queue_ranks_planted_label_errors_first_on_data_the_model_did_not_train_on(tiny_dataset):
    """Issue 27.1: the queue was every misclassified sample, training split included (a queue of model
    errors). Here a model with real errors of its own (overlapping classes: about 7 % of samples on the
    wrong side, at moderate confidence) and 5 % planted label errors: the queue holds only samples the
    model did not train on, the planted errors fill its top, and `reviewed` takes a sample out."""
    import fiftyone as fo
    import numpy as np

    from components.curation import brain, dataset
    ds, _ = tiny_dataset
    ds.delete_samples(ds)
    rng = np.random.default_rng(3)
    n = 800
    truth = rng.integers(0, 2, n)                                   # 1: synthesized
    score = 1 / (1 + np.exp(-2 * rng.normal(np.where(truth == 1, 1.5, -1.5), 1.0)))   # the model's p(synthesized)
    split = np.where(rng.random(n) < 0.3, "eval", "train")
    planted = set(rng.choice(n, size=n // 20, replace=False).tolist())   # 5 % of the labels are wrong
    names = ("real", "synthesized")
    ds.add_samples([fo.Sample(
        filepath=f"/nonexistent/s{i}.jpg", path=f"/nonexistent/s{i}.jpg", split=str(split[i]),
        ground_truth=fo.Classification(label=names[int(truth[i]) ^ (i in planted)]),
        prediction=fo.Classification(label=names[int(score[i] >= 0.5)], confidence=float(max(score[i], 1 - score[i]))))
        for i in range(n)], progress=False)
    brain.compute_mistakenness(ds)
    dataset.save_views(ds, 0.5, 0.1)
    queue = ds.load_saved_view("likely_label_errors")
    index = [int(p.rsplit("s", 1)[1].split(".")[0]) for p in queue.values("path")]
    assert index and all(split[i] == "eval" for i in index)          # never a sample the model trained on
    planted_eval = {i for i in planted if split[i] == "eval"}
    top = index[:len(planted_eval)]
    misclassified = sum((score[i] >= 0.5) != truth[i] for i in range(n) if split[i] == "eval")
    assert misclassified > len(planted_eval)      # the model's own errors outnumber the planted ones ...
    assert len(planted_eval & set(top)) >= 0.8 * len(planted_eval), (sorted(planted_eval), top)   # ... yet rank below
    assert "did not train on" in ds.get_saved_view_info("likely_label_errors")["description"]
    # a reviewed sample leaves the queue (the tag survives rebuilds: it is not a managed tag)
    before = queue.values("path")
    ds.select(queue.first().id).tag_samples(dataset.REVIEWED_TAG)
    assert dataset.REVIEWED_TAG not in dataset.MANAGED_TAGS
    assert ds.load_saved_view("likely_label_errors").values("path") == before[1:]
