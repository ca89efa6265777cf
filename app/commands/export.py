"""``stemtok export``: turn a trained LM and codec into the ONNX model folder the engine runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.errors import StemtokError, install_hint

EXAMPLES = """\
Examples (the shipped default model; the shipped teacher):
  stemtok export --lm runs/lm-small/lm.pt --codec resources/models/codec-small \\
      --out resources/models/default --overwrite
  stemtok export --teacher runs/teacher-small --out resources/models/teacher --overwrite
  stemtok export --refine resources/models/default --codec runs/prior \
      --out resources/models/default --overwrite
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX",
        description="Write encoder.onnx, lm.onnx (one graph for prefill and decode steps, with "
        "a fixed KV buffer written in place), the codec's generative and aligned decoders, "
        "embed.npy and model_config.json into OUT, after checking that onnxruntime and torch "
        "agree (greedy tokens identical, logits and decoded audio within tolerance). With "
        "--teacher, write teacher.onnx (mixture STFT -> four complex masks) and its "
        "model_config.json instead, checked the same way (masks and separated audio).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lm", type=Path, help="LM weights (lm.pt or a checkpoint)")
    p.add_argument("--codec", type=Path, help="codec folder (codec.pt + config)")
    p.add_argument(
        "--teacher",
        type=Path,
        metavar="RUN",
        help="export the teacher instead: a run folder (teacher.pt or its latest checkpoint), "
        "a checkpoint or a teacher.pt file",
    )
    p.add_argument(
        "--optimize",
        type=Path,
        metavar="FOLDER",
        help="upgrade an exported model folder instead: fuse its LM graph and add the float16 "
        "LM for CUDA (lm_fp16.onnx), both checked against its float32 graph",
    )
    p.add_argument(
        "--refine",
        type=Path,
        metavar="FOLDER",
        help="upgrade an exported model folder instead: give it the aligned decoder of --codec, "
        "one trained to refine a teacher's estimates ('stemtok train codec --prior-teacher'); "
        "the folder then runs that teacher too",
    )
    p.add_argument(
        "--prior-teacher",
        type=Path,
        metavar="TEACHER",
        help="with --refine: the teacher the decoder refines (default: the one it trained with)",
    )
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument(
        "--kv",
        choices=("inplace", "growing"),
        default="inplace",
        help="KV cache graph: fixed buffer bound in place (default) or growing past/present",
    )
    p.add_argument(
        "--parity-audio",
        type=Path,
        default=Path("resources/demo/demo.flac"),
        help="song whose windows the parity check uses (noise when missing)",
    )
    p.add_argument(
        "--wiener",
        type=int,
        metavar="N",
        help="teacher only: rounds of the multichannel Wiener filter the folder asks the runtime "
        "for (default: the choice in docs/teacher-report.md; 0 turns it off)",
    )
    p.add_argument(
        "--weights",
        choices=("float32", "float16"),
        default="float32",
        help="teacher only: how teacher.onnx stores its weights; float16 halves the file and "
        "onnxruntime still computes in float32 (parity is checked against the rounded weights)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise StemtokError(f"export needs torch and onnx ({install_hint('train')})") from exc
    torch.set_num_threads(max(1, args.threads))
    if args.teacher is not None:
        return _run_teacher(args)
    if args.refine is not None:
        from export.model import refine_model

        if args.codec is None or args.lm is not None:
            raise StemtokError("--refine takes --codec (the refined codec's run) and no --lm")
        refine_model(
            args.refine,
            args.codec,
            args.out,
            teacher=args.prior_teacher,
            overwrite=args.overwrite,
            parity_audio=args.parity_audio,
        )
    elif args.optimize is not None:
        from export.model import optimize_model

        optimize_model(
            args.optimize, args.out, overwrite=args.overwrite, parity_audio=args.parity_audio
        )
    else:
        from export.model import export_model

        if args.lm is None or args.codec is None:
            raise StemtokError("give --lm and --codec (or --teacher RUN)")
        if not args.lm.is_file():
            raise StemtokError(f"{args.lm}: no such LM file")
        export_model(
            args.lm,
            args.codec,
            args.out,
            overwrite=args.overwrite,
            kv=args.kv,
            parity_audio=args.parity_audio,
        )
    print(args.out)
    return 0


def _run_teacher(args: argparse.Namespace) -> int:
    from export.teacher import export_teacher

    if args.lm is not None or args.codec is not None:
        raise StemtokError("--teacher exports the teacher alone: leave out --lm and --codec")
    from export.teacher import WIENER_ITERATIONS

    wiener: int = WIENER_ITERATIONS if args.wiener is None else args.wiener
    if not 0 <= wiener <= 10:
        raise StemtokError("--wiener takes 0 to 10 rounds")
    export_teacher(
        args.teacher,
        args.out,
        overwrite=args.overwrite,
        parity_audio=args.parity_audio,
        wiener_iterations=wiener,
        weights=args.weights,
    )
    print(args.out)
    return 0
