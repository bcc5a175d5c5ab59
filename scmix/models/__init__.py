"""The models stage (rules train and loadings): ``modules/`` (the torch modules and likelihoods, no I/O),
``modelspec`` (model settings, defaults and checks; read while the DAG is built), ``modeldata`` (an AnnData to the
checked counts and codes a module takes), ``transforms`` (the Gaussian baseline's input), ``train`` (the training
loop), ``checkpoint`` (a model file written and read as plain data and tensors), ``trained`` (``TrainedModel``:
one object over a trained module), ``scvi_models`` (scvi-tools' models behind the same interface) and ``loading``
(``scmix.load``).

May import: the core modules at the top of ``scmix`` and ``scmix.data`` (a model reads cells and their genes).
Never ``scmix.evaluation`` or ``scmix.plots``. No imports here: the workflow imports ``modelspec`` while it builds
the DAG, without torch.
"""
