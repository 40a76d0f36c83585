"""finepurify: find and remove backdoors in fine-tuned transformer text classifiers.

The Python front end over finepurify's C++ library (the same code as the `finepurify` command):

    import finepurify as fp
    scan = fp.scan(pretrained="all-MiniLM-L6-v2", suspect="suspect/", clean="clean.tsv")
    print(scan.flagged)                        # tokens whose insertion flips the suspect
    result = fp.purify(pretrained="all-MiniLM-L6-v2", suspect="suspect/", clean="clean.tsv",
                       out="purified/", progress=print)
    print(result.chosen_rho, result.purified.clean_dev_accuracy)

Every keyword option is the CLI flag's name with underscores (`--max-acc-drop` is
`max_acc_drop`), checked by the same option tables. Models are folders, registered names
(`finepurify models list`) or loaded `transformers` models; results are typed objects with
`.to_dict()`; library errors raise FinepurifyError with the CLI's kind and exit code.
"""
from ._api import (AttackResult, EvalResult, FinepurifyError, FinetuneResult, Point, PurifyResult, ScanResult,
                   Scores, attack, defend, evaluate, finetune, option_names, purify, scan)

__all__ = ["scan", "purify", "defend", "attack", "finetune", "evaluate", "option_names", "FinepurifyError",
           "Scores", "Point", "PurifyResult", "ScanResult", "AttackResult", "FinetuneResult", "EvalResult"]
__version__ = "0.1.0"
