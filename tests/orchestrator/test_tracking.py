from types import SimpleNamespace

from orchestrator.spec import load_study
from orchestrator.tracking import configure_wandb_env, offline_runs, resolve_wandb_mode, sync_command, wandb_callback
from tests.conftest import REPO
from trainables import TRIAL_META_KEY


def test_auto_mode_is_offline_without_a_key_and_online_with_one(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_environment_and_callback(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    study = load_study(REPO / "studies" / "demo.yaml")
    assert configure_wandb_env(study) == "offline"
    callback = wandb_callback(study, "offline")
    assert callback.group == "demo" and callback.kwargs["mode"] == "offline" and callback.kwargs["tags"] == ["demo"]
    assert "api_key" not in callback.kwargs
    assert wandb_callback(study, "disabled") is None


def test_sync_command_lists_offline_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    assert sync_command(tmp_path) is None
    (tmp_path / "classifier_a" / "wandb" / "offline-run-20260101_000000-a").mkdir(parents=True)
    assert len(offline_runs(tmp_path)) == 1
    assert sync_command(tmp_path) == f"wandb sync {tmp_path}/*/wandb/offline-run-*"


def _trial(tmp_path, trial_id: str, config: dict):
    import pyarrow.fs

    folder = tmp_path / f"classifier_{trial_id}"
    return SimpleNamespace(
        trial_id=trial_id, config=config, path=str(folder), local_path=str(tmp_path / "staging" / folder.name),
        experiment_dir_name="demo", storage=SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem()),
    )


def test_each_trial_run_is_described_by_its_metadata(tmp_path):
    study = load_study(REPO / "studies" / "demo.yaml")
    callback = wandb_callback(study, "offline")
    meta = {"cell": "attention=eca,placement=head", "factors": {"attention": "eca", "placement": "head"},
            "phase": "confirm", "repeat": 2, "study": "demo"}
    config = {"lr": 0.1, "wandb_api_key": "k" * 40, "data": {"path": "/d", "HF_TOKEN": "t"}, TRIAL_META_KEY: meta}
    init = callback.init_kwargs(_trial(tmp_path, "abc_00001", config))
    assert init["id"] == "abc_00001" and init["resume"] == "allow" and init["mode"] == "offline"
    assert (init["group"], init["job_type"], init["project"]) == ("demo", "confirm", study.tracking.wandb.project)
    assert init["tags"] == ["demo", "attention=eca", "placement=head", "confirm"]
    assert init["name"] == "classifier_abc_00001 (attention=eca,placement=head)"
    assert init["config"] == {"lr": 0.1, "data": {"path": "/d"}, TRIAL_META_KEY: meta}
    assert init["dir"] == str(tmp_path / "classifier_abc_00001")  # the study's trial folder, not Ray's staging copy
    assert "k" * 40 not in repr(init)

    bare = callback.init_kwargs(_trial(tmp_path, "abc_00002", {"lr": 0.2}))
    assert (bare["job_type"], bare["tags"], bare["name"]) == ("search", ["demo"], "classifier_abc_00002")
