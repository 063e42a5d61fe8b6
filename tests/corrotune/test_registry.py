import pytest

from corrotune.registry import Registry, closest


def test_unknown_name_lists_valid_names_with_a_hint():
    registry = Registry("widget")
    registry.register("resnet_head")(object())
    registry.register("vit_head")(object())
    with pytest.raises(KeyError) as err:
        registry.get("resnet_haed")
    message = err.value.args[0]
    assert "did you mean 'resnet_head'?" in message
    assert "Valid names: resnet_head, vit_head" in message


def test_far_names_get_no_hint_and_duplicates_are_refused():
    registry = Registry("widget")
    registry.register("alpha")(1)
    assert "did you mean" not in registry.unknown_message("zzz")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("alpha")(2)
    assert registry.get("alpha") == 1 and "alpha" in registry and len(registry) == 1


def test_closest():
    assert closest("dropuot", ["dropout", "dense_units"]) == "dropout"
    assert closest("qqq", ["dropout"]) is None
