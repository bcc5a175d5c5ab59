"""Rule train_seeds: every seed of one model (models.NAME.seeds_together, scmix's architectures) on one mix in one
job, trained side by side on one device by scmix.models.train.build_and_fit_many. Each seed has its own mix file (its
own draw of cells); each seed's checkpoint and history are what rule train writes for that seed alone
(scmix.models.trainjob, which both scripts run)."""

import logging

from scmix import rulecall
from scmix.models.train import TrainingDiverged, build_and_fit_many
from scmix.models.trainjob import SeedRun, diverged, job_device


def main(smk):
    model_name, mix = smk.wildcards.model, smk.wildcards.mix
    seeds = [int(s) for s in smk.params.seeds]
    spec = dict(smk.params.spec)
    device = job_device(model_name, smk.resources.device, smk.threads)
    runs = [SeedRun.read(path, spec, model=model_name, mix=mix, seed=seed, device=device)
            for seed, path in zip(seeds, smk.input.h5ad, strict=True)]  # fmt: skip
    args = [run.trainer_args(smk.resources.device) for run in runs]
    logging.info("training seeds %s of %s on mix %s together on device %s", seeds, model_name, mix, device)
    try:
        fitted = build_and_fit_many([spec["architecture"]] * len(runs), [a.kwargs for a in args],
                                    [a.data for a in args], [a.cfg for a in args])  # fmt: skip
    except TrainingDiverged as err:
        raise diverged(err, model=model_name, mix=mix, seeds=seeds) from None
    outputs = zip(runs, args, fitted, smk.output.model, smk.output.history, strict=True)
    for run, run_args, (model, history), model_path, history_path in outputs:
        run.write(model, history, run_args, model_path=model_path, history_path=history_path)


rulecall.run(main, snakemake)  # noqa: F821
