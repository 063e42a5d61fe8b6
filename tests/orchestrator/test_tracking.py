from orchestrator.spec import load_study
from orchestrator.tracking import configure_wandb_env, offline_runs, resolve_wandb_mode, sync_command, wandb_callback
from tests.conftest import REPO


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
