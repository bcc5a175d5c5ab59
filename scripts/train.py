"""Rule train: fit one model on one mix and seed; write the checkpoint and the per-epoch TSV (rule plot_loss
draws its curve). scmix's models train with scmix.models.train; scvi-tools' (architecture scvi, scvi_linear) with
scvi-tools' own trainer (scmix.models.scvi_models). What the job does around the trainer is
scmix.models.trainjob's, shared with rule train_seeds (every seed of a model on a mix in one job)."""

from scmix import rulecall
from scmix.io import write_table
from scmix.models.modelspec import SCVI_ARCHITECTURES
from scmix.models.train import TrainingDiverged, build_and_fit
from scmix.models.trainjob import SeedRun, diverged, job_device


def main(smk):
    model_name, mix, seed = smk.wildcards.model, smk.wildcards.mix, int(smk.wildcards.seed)
    spec = dict(smk.params.spec)
    arch = spec["architecture"]
    device = job_device(model_name, smk.resources.device, smk.threads)
    run = SeedRun.read(smk.input.h5ad, spec, model=model_name, mix=mix, seed=seed, device=device)
    if arch in SCVI_ARCHITECTURES:
        from scmix.models.scvi_models import fit_scvi, save_scvi

        model, history, epochs = fit_scvi(run.X, run.adata.obs, run.adata.var_names, spec, seed=seed, device=device,
                                          name=mix)  # fmt: skip
        trained = {"seed": seed, "epochs": epochs, "lr": spec["lr"], "batch_size": spec["batch_size"]}
        meta = {**run.meta, "train": trained}
        save_scvi(smk.output.model, model, architecture=arch, genes=run.adata.var_names, meta=meta)
        write_table(history, smk.output.history)
        return
    args = run.trainer_args(smk.resources.device)
    try:
        model, history = build_and_fit(arch, *args)
    except TrainingDiverged as err:
        raise diverged(err, model=model_name, mix=mix, seeds=[seed]) from None
    run.write(model, history, args, model_path=smk.output.model, history_path=smk.output.history)


rulecall.run(main, snakemake)  # noqa: F821
