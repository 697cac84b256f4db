"""Training progress: a bar with ETA, loss and tokens/s; log lines in words instead of raw dicts."""

from __future__ import annotations

import io

from ltd_hub.progress import TrainingProgress, format_log, install


def test_log_lines_are_words_not_dicts():
    logs = {"loss": 10.9, "grad_norm": 2.331, "learning_rate": 0.0, "epoch": 0.125, "train_runtime": 0.27, "train_tokens_per_second": 548.8}
    assert format_log(logs, 2, 1) == "step 1/2 · epoch 0.125 · loss 10.9 · lr 0 · grad norm 2.33 · 549 tokens/s"
    assert format_log({"train_runtime": 2.059, "train_loss": 10.87, "epoch": 0.25}, 2, 2) == (
        "trained 2 steps in 2.1 s · epoch 0.25 · mean loss 10.87"
    )
    assert format_log({"eval_samples": 3}) is None


def test_a_real_trainer_shows_a_bar_with_tokens_per_second_and_no_raw_dicts(tmp_path, capsys):
    import torch
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(16, 4)
            self.head = torch.nn.Linear(4, 16)

        def forward(self, input_ids=None, labels=None, attention_mask=None):
            logits = self.head(self.embed(input_ids))
            return {"loss": torch.nn.functional.cross_entropy(logits.view(-1, 16), labels.view(-1)), "logits": logits}

    rows = [{"input_ids": torch.tensor([i % 16, (i + 1) % 16]), "labels": torch.tensor([1, 2])} for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1, report_to="none",
        use_cpu=True, save_strategy="no", include_num_input_tokens_seen="all", disable_tqdm=False,
    )  # fmt: skip
    trainer = Trainer(model=Tiny(), args=args, train_dataset=rows)
    install(trainer)
    progress = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TrainingProgress))
    progress.stream = stream = io.StringIO()
    trainer.train()
    text = stream.getvalue()
    assert "training: 100%" in text and "3/3" in text and "tokens/s=" in text
    assert "step 1/3 · epoch" in text and "trained 3 steps in" in text
    assert "{'loss'" not in text and "{'loss'" not in capsys.readouterr().out
