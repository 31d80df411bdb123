"""Builds the official RLIPv2 model (RLIP_ParSeDA_v2 or RLIP_ParSeD_v2, R50) on CPU from the
official code, with no network: RoBERTa is built from a config instead of `from_pretrained`, the
tokenizer is a stub.

    /usr/bin/python3 tools/official_model.py OFFICIAL_REPO schema OUT.txt [--variant V] [--queries N]
        writes the state-dict schema (key, dtype, shape, the earlier key it aliases, one line each)
        of the model the variant's HICO-DET fine-tune script builds.
    /usr/bin/python3 tools/official_model.py OFFICIAL_REPO pth OUT.pth [--variant V] [--queries N]
        writes a checkpoint in the official save format (main.py:743-757: model, optimizer,
        lr_scheduler, epoch, args) whose tensors are stride-0 views of one small storage per
        tensor, so the file stays small while every key and shape is the real one.

V is `parseda` (default; `fine_tune_RLIP_ParSeDA_v2_hico.sh`, num_queries 128 by default) or
`parsed` (`fine_tune_RLIP_ParSeD_v2_hico_r50.sh`: FFN 1024, num_queries 200 by default).
`--backbone swin_tiny|swin_large` takes the Swin scripts' backbone flags (`--drop_path_rate` 0.2 / 0.5).
`--dataset vcoco` takes the V-COCO fine-tune's head flags instead (`fine_tune_RLIP_ParSeDA_v2_vcoco.sh`:
`--dataset_file vcoco --num_obj_classes 81 --num_verb_classes 29`, 200 queries).

Needs Debian's python3-torch and python3-scipy, transformers 4.5.1 and timm 0.6.13 (pip, --no-deps).
"""
import argparse
import json
import os
import sys
import types


# Imported by the official training/data code but not needed to build the model: any module
# under these names becomes an inert stub package.
STUBBED = {"MultiScaleDeformableAttention", "pycocotools", "cv2", "submitit", "wandb", "panopticapi", "lvis", "matplotlib", "seaborn", "skimage", "sklearn", "pandas", "PIL_stub"}


class _Stub(types.ModuleType):
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")

    def __call__(self, *a, **k):
        return _Stub(self.__name__ + "()")


class _StubFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        import importlib.machinery
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, _StubLoader())
        return None


class _StubLoader:
    @staticmethod
    def create_module(spec):
        return _Stub(spec.name)

    @staticmethod
    def exec_module(module):
        pass



# The flags of each variant's R50 HICO-DET fine-tune script that shape the model (the rest only train).
VARIANT_FLAGS = {
    "parseda": "--RLIP_ParSeDA_v2 --num_patterns 0 --pe_temperatureH 20 --pe_temperatureW 20 --dim_feedforward 2048",
    "parsed": "--RLIP_ParSeD_v2 --dim_feedforward 1024",
}
DEFAULT_QUERIES = {"parseda": 128, "parsed": 200}


def variant_flags(variant, backbone):
    """The variant's flags; the ParSeD Swin scripts use FFN 2048, its R50 scripts 1024 (spec §1.2)."""
    flags = VARIANT_FLAGS[variant]
    return flags.replace("--dim_feedforward 1024", "--dim_feedforward 2048") if backbone.startswith("swin") else flags
SCRIPT = {"parseda": "fine_tune_RLIP_ParSeDA_v2_hico.sh", "parsed": "fine_tune_RLIP_ParSeD_v2_hico_r50.sh"}
NAME = {"parseda": "RLIP_ParSeDA_v2", "parsed": "RLIP_ParSeD_v2"}


DATASET_FLAGS = {"hico": "--dataset_file hico", "vcoco": "--dataset_file vcoco --num_obj_classes 81 --num_verb_classes 29"}


# The backbone flags of the Swin scripts (`fine_tune_RLIP_ParSeDA_v2_hico_swin{T,L}.sh`).
BACKBONE_FLAGS = {
    "resnet50": "--backbone resnet50",
    "swin_tiny": "--backbone swin_tiny --drop_path_rate 0.2",
    "swin_large": "--backbone swin_large --drop_path_rate 0.5",
}


def official_args(repo, queries, variant="parseda", dataset="hico", backbone="resnet50"):
    sys.meta_path.append(_StubFinder())
    os.chdir(repo)  # the official code opens datasets/priors/* relative to the working directory
    sys.path.insert(0, repo)
    sys.argv = ["main.py"]
    import main as official_main  # noqa: E402  (the official argument parser)

    flags = (
        f"{DATASET_FLAGS[dataset]} --hoi --load_backbone supervised {BACKBONE_FLAGS[backbone]} "
        "--obj_loss_type cross_entropy --verb_loss_type focal --enc_layers 6 --dec_layers 3 "
        f"--num_queries {queries} --use_nms_filter {variant_flags(variant, backbone)} --with_box_refine "
        "--num_feature_levels 4 --dropout 0.0 --use_no_obj_token --fusion_type GLIP_attn "
        "--gating_mechanism VXAc --verb_query_tgt_type vanilla_MBF --fusion_interval 2 "
        "--fusion_last_vis --lang_aux_loss --subject_class"
    ).split()
    parser = argparse.ArgumentParser(parents=[official_main.get_args_parser()])
    return parser.parse_args(flags)


def patch_transformers_5():
    """The official code imports transformers 4.5.1's pruning and chunking helpers from
    `modeling_utils`; later releases moved them to `pytorch_utils` or dropped them (pruning is never
    used at inference). Lets the same tools run on a GPU image with a newer transformers."""
    import transformers.modeling_utils as mu
    try:
        import transformers.pytorch_utils as pu
    except ImportError:
        pu = None

    def dropped(*_a, **_k):
        raise NotImplementedError("head pruning is not part of inference")

    for name in ("find_pruneable_heads_and_indices", "prune_linear_layer", "apply_chunking_to_forward"):
        if not hasattr(mu, name):
            setattr(mu, name, getattr(pu, name, dropped))

    # the official language-side RobertaLayer (models/modeling_roberta.py) calls 4.5.1's
    # encoder-case mask helper: (1 - mask) · -10000 in the model's dtype
    from transformers.models.roberta.modeling_roberta import RobertaPreTrainedModel

    def get_extended_attention_mask(self, attention_mask, input_shape, device=None):
        if attention_mask.dim() not in (2, 3):
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} for input {tuple(input_shape)}")
        ext = attention_mask[:, None, :, :] if attention_mask.dim() == 3 else attention_mask[:, None, None, :]
        return (1.0 - ext.to(dtype=self.dtype)) * -10000.0

    if not hasattr(RobertaPreTrainedModel, "get_extended_attention_mask"):
        RobertaPreTrainedModel.get_extended_attention_mask = get_extended_attention_mask


def patch_offline():
    import transformers

    patch_transformers_5()

    class StubTokenizer:
        pass

    def config(*_a, **_k):
        return transformers.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)

    transformers.RobertaConfig.from_pretrained = staticmethod(config)
    transformers.RobertaModel.from_pretrained = staticmethod(lambda *_a, **_k: transformers.RobertaModel(config()))
    transformers.RobertaTokenizerFast.from_pretrained = staticmethod(lambda *_a, **_k: StubTokenizer())
    # the backbone's supervised weights come from a /mnt path: the checkpoint overrides them
    import torch
    real_load = torch.load
    import torchvision
    torch.load = lambda f, *a, **k: torchvision.models.resnet50().state_dict() if isinstance(f, str) and f.startswith("/mnt") else real_load(f, *a, **k)


def patch_msda(op=None):
    """The official CUDA op: `op` (the built extension module, forward only) if given, else its
    grid_sample twin from the same file (ms_deform_attn_core_pytorch)."""
    import importlib

    from models.ops.functions.ms_deform_attn_func import ms_deform_attn_core_pytorch

    class Twin:
        @staticmethod
        def apply(value, shapes, level_start_index, locations, weights, im2col_step):
            if op is not None:
                return op.ms_deform_attn_forward(value, shapes, level_start_index, locations, weights, im2col_step)
            return ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    for mod in ("models.ops.modules.ms_deform_attn", "models.dab_deformable.ops.modules.ms_deform_attn"):
        try:
            importlib.import_module(mod).MSDeformAttnFunction = Twin
        except ImportError:
            pass


def build(repo, queries, msda_op=None, variant="parseda", dataset="hico", backbone="resnet50"):
    patch_offline()
    args = official_args(repo, queries, variant, dataset, backbone)
    args.device = "cpu"
    patch_msda(msda_op)
    from models import build_model

    model, _, _ = build_model(args)
    return model.eval(), args


def schema(repo, out, queries, variant, backbone="resnet50"):
    model, _ = build(repo, queries, variant=variant, backbone=backbone)
    lines = [
        f"# state_dict() of the official {NAME[variant]} {backbone} model ({SCRIPT[variant]} flags, num_queries {queries}),",
        "# written by tools/official_model.py: key, dtype, shape, and the earlier key it aliases (one storage) or -",
    ]
    ptr = {}
    for k, v in model.state_dict().items():
        alias = ptr.setdefault(v.data_ptr(), k)
        dtype = str(v.dtype).replace("torch.", "")
        lines.append(f"{k} {dtype} {','.join(map(str, v.shape))} {'-' if alias == k else alias}")
    open(out, "w").write("\n".join(lines) + "\n")


def small_pth(repo, out, queries, variant, dataset, backbone="resnet50"):
    import torch

    model, args = build(repo, queries, variant=variant, dataset=dataset, backbone=backbone)
    sd = model.state_dict()
    small = type(sd)()
    seen = {}
    for i, (k, v) in enumerate(sd.items()):
        if v.data_ptr() in seen:  # an alias: the same tensor under a second name, as torch.save keeps it
            small[k] = small[seen[v.data_ptr()]]
            continue
        seen[v.data_ptr()] = k
        if v.dtype == torch.int64:
            small[k] = v.clone()
        elif k.endswith("running_var"):  # a variance is positive: FrozenBN's rsqrt stays finite
            small[k] = torch.tensor([0.5 + 0.001 * (i % 97)], dtype=v.dtype).expand(v.shape)
        else:
            small[k] = torch.tensor([0.001 * (i % 97) - 0.05], dtype=v.dtype).expand(v.shape) if v.dim() else torch.tensor(0.5)
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    torch.save({"model": small, "optimizer": optimizer, "lr_scheduler": {"step_size": 15, "last_epoch": 3}, "epoch": 3, "args": args}, out)


if __name__ == "__main__":
    repo, what, out = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else "parseda"
    dataset = sys.argv[sys.argv.index("--dataset") + 1] if "--dataset" in sys.argv else "hico"
    default = 200 if dataset == "vcoco" else DEFAULT_QUERIES[variant]
    queries = int(sys.argv[sys.argv.index("--queries") + 1]) if "--queries" in sys.argv else default
    backbone = sys.argv[sys.argv.index("--backbone") + 1] if "--backbone" in sys.argv else "resnet50"
    {"schema": lambda: schema(repo, out, queries, variant, backbone),
     "pth": lambda: small_pth(repo, out, queries, variant, dataset, backbone)}[what]()
