"""What a model file may hold and what is refused: no pickle in a checkpoint runs (the file is data, never code),
a checkpoint's architecture and gene list must fit its weights and the config that evaluates it, and an unreadable
file is one line that says to rebuild it. None of these needs scvi-tools: a file is refused before it is imported."""

import io
import pickle

import numpy as np
import pytest
import torch

import scmix
from scmix.errors import ScmixInputError
from scmix.models.checkpoint import FORMAT, save_checkpoint, save_payload
from scmix.models.loading import load_for_config
from scmix.models.modules import build_model


class _Opens:
    """Unpickled, this would create ``path`` (as any code in a crafted pickle could)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _ldvae(tmp_path, blood, *, architecture="ldvae", genes=None, kwargs=None, name="m.pt"):
    kwargs = kwargs or {"n_genes": blood.n_vars, "n_latent": 3, "hidden": [16]}
    torch.manual_seed(0)
    model = build_model("ldvae", **{"n_genes": blood.n_vars, "n_latent": 3, "hidden": [16]})
    genes = list(blood.var_names) if genes is None else genes
    path = tmp_path / name
    save_checkpoint(path, model, architecture=architecture, model_kwargs=kwargs, genes=genes,
                    meta={"model": "ldvae", "spec": {"architecture": "ldvae"}, "gene_keys": list(genes)})  # fmt: skip
    return path


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and "weights_only" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("where", ["scvi_model", "payload"])
@pytest.mark.parametrize("architecture", ["scvi", "scvi_linear"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path, where, architecture):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    if where == "payload":  # the whole file one pickle of code
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "architecture": architecture, "x": _Opens(marker)}, buffer)
        path.write_bytes(buffer.getvalue())
    else:  # scvi-tools' own model.pt, as an scmix checkpoint held it, carrying the code
        inner = io.BytesIO()
        torch.save({"model_state_dict": {}, "var_names": np.array(["g0"]), "attr_dict": _Opens(marker)}, inner)
        save_payload(path, {
            "format": FORMAT, "architecture": architecture, "model_kwargs": {}, "genes": ["g0"],
            "meta": {"model": "m", "spec": {"architecture": architecture, "batch_key": None}},
            "scvi_model": torch.frombuffer(bytearray(inner.getvalue()), dtype=torch.uint8),
        })  # fmt: skip
    for load in (scmix.load, lambda p: load_for_config(p, model="ldvae", architecture="ldvae")):
        with pytest.raises(ScmixInputError) as err:
            load(path)
        message = _one_line(err)
        assert str(path) in message and ("rerun the train rule" in message or "retrain" in message), message
        assert not marker.exists()
    assert not marker.exists()
    # the pickle is live: unpickled without the guard, it does create the marker
    if where == "payload":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(pickle.dumps(_Opens(marker)))
    assert marker.exists()


def test_a_checkpoint_whose_gene_list_and_weights_disagree_is_refused(tmp_path, blood):
    # 50 gene names over weights for all the genes; the recorded n_genes still says all
    path = _ldvae(tmp_path, blood, genes=list(blood.var_names[:50]))
    with pytest.raises(ScmixInputError) as err:
        scmix.load(path)
    message = _one_line(err)
    assert f"lists 50 genes but its weights are for {blood.n_vars} genes" in message and str(path) in message
    # the recorded settings edited to match the list: the weights still say otherwise
    path = _ldvae(tmp_path, blood, genes=list(blood.var_names[:50]), kwargs={"n_genes": 50, "n_latent": 3,
                                                                               "hidden": [16]})  # fmt: skip
    with pytest.raises(ScmixInputError) as err:
        scmix.load(path)
    assert f"its weights are for {blood.n_vars} genes, not the 50 it lists" in _one_line(err)
    # gene keys (what eval sets are matched on) of another length than the genes
    path = _ldvae(tmp_path, blood)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["gene_keys"] = payload["meta"]["gene_keys"][:-1]
    save_payload(path, payload)
    with pytest.raises(ScmixInputError, match=f"{blood.n_vars - 1} gene keys for {blood.n_vars} genes") as err:
        scmix.load(path)
    _one_line(err)
    # the intact file loads
    assert len(scmix.load(_ldvae(tmp_path, blood)).genes) == blood.n_vars


def test_a_checkpoint_of_one_architecture_labelled_as_another_is_named(tmp_path, blood):
    path = _ldvae(tmp_path, blood, architecture="vae")
    with pytest.raises(ScmixInputError) as err:
        scmix.load(path)
    message = _one_line(err)
    assert "says architecture 'vae' but its weights are those of architecture 'ldvae'" in message
    assert str(path) in message
    path = _ldvae(tmp_path, blood, architecture="transformer")
    with pytest.raises(ScmixInputError, match="architecture 'transformer'.*one of") as err:
        scmix.load(path)
    _one_line(err)


def test_the_config_that_evaluates_a_checkpoint_must_name_its_architecture(tmp_path, blood):
    path = _ldvae(tmp_path, blood)
    assert load_for_config(path, model="ldvae", architecture="ldvae").architecture == "ldvae"
    with pytest.raises(ScmixInputError) as err:
        load_for_config(path, model="big", architecture="vae")
    message = _one_line(err)
    assert message.startswith(f"model 'big', file '{path}': ") and "holds architecture ldvae" in message
    assert "the config's model 'big' has architecture vae" in message and "rerun the train rule" in message
    # an scvi-tools checkpoint where the config says ldvae: refused before scvi-tools is needed
    save_payload(tmp_path / "s.pt", {"format": FORMAT, "architecture": "scvi", "model_kwargs": {}, "genes": ["g"],
                                     "meta": {}, "state_dict": {}})  # fmt: skip
    expected = "holds architecture scvi but the config's model 'ldvae' has architecture ldvae"
    with pytest.raises(ScmixInputError, match=expected) as err:
        load_for_config(tmp_path / "s.pt", model="ldvae", architecture="ldvae")
    _one_line(err)


@pytest.mark.parametrize("content", ["random", "truncated", "text", "empty", "not_a_dict", "other_format"])
def test_an_unreadable_checkpoint_is_one_line_that_says_to_rebuild_it(tmp_path, blood, content):
    path = tmp_path / "model.pt"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "truncated":
        whole = _ldvae(tmp_path, blood, name="whole.pt").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif content == "text":
        path.write_text("architecture: ldvae\ngenes: [a, b]\n")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "not_a_dict":
        torch.save([torch.zeros(3)], path)
    else:
        torch.save({"format": "other/2", "state_dict": {}}, path)
    with pytest.raises(ScmixInputError) as err:
        scmix.load(path)
    message = _one_line(err)
    assert message.startswith(f"file '{path}': ") and "not a readable scmix checkpoint" in message, message
    assert "delete it and rerun the train rule" in message
