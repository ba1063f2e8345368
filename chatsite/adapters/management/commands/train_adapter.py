import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chatsite.adapters.management.registering import check_slug, register_dir
from chatsite.adapters.models import Adapter
from inference.training import TrainingError, TrainingSettings, read_chats, train_lora

DEFAULTS = TrainingSettings()


class Command(BaseCommand):
    help = (
        'Fine-tune a LoRA adapter on a JSONL file of chats ({"messages": [...]} per line; the '
        "loss covers each chat's last assistant answer), then validate and register it under "
        "--slug. Shows a progress bar with the loss and the time left."
    )

    def add_arguments(self, parser):
        parser.add_argument("data", type=Path, help="JSONL chats to learn from")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", help="Display name (default: the slug).")
        parser.add_argument("--description", default="")
        parser.add_argument("--base-model", help="Model to train on (default: BASE_MODEL).")
        parser.add_argument("--trained-on", help="Base model name written into the adapter.")
        parser.add_argument("--rank", type=int, default=DEFAULTS.rank)
        parser.add_argument("--alpha", type=int, default=DEFAULTS.alpha)
        parser.add_argument("--targets", default=",".join(DEFAULTS.target_modules),
                            help="Comma-separated module names, e.g. q_proj,v_proj.")
        parser.add_argument("--steps", type=int, default=DEFAULTS.steps)
        parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
        parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
        parser.add_argument("--max-tokens", type=int, default=DEFAULTS.max_tokens,
                            help="Longest chat in tokens; longer ones are cut from the left.")
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
        parser.add_argument("--output", type=Path,
                            help="Also keep the adapter's files in this directory.")
        parser.add_argument("--no-register", action="store_true",
                            help="Only write --output; register nothing.")

    def handle(self, *args, **options):
        if options["no_register"] and not options["output"]:
            raise CommandError("--no-register needs --output, or the adapter would be lost.")
        adapter = None if options["no_register"] else self._new_adapter(options)
        chats, training = self._inputs(options)
        base_model = options["base_model"] or settings.BASE_MODEL
        self.stdout.write(f"Training {options['slug']} on {len(chats)} chats with {base_model} …")
        with tempfile.TemporaryDirectory(prefix="patchbay-train-") as scratch:
            trained = Path(scratch) / "adapter"
            result = self._train(base_model, chats, trained, training, options["trained_on"])
            self.stdout.write(
                f"Trained in {result.seconds:.0f} s: loss {result.first_loss:.3f} → "
                f"{result.last_loss:.3f}."
            )
            if options["output"]:
                shutil.copytree(trained, options["output"], dirs_exist_ok=True)
                self.stdout.write(f"Wrote {options['output']}.")
            if adapter is not None:
                self._register(trained, adapter)

    def _new_adapter(self, options) -> Adapter:
        slug = options["slug"]
        if Adapter.objects.filter(slug=slug).exists():
            raise CommandError(f"An adapter with slug {slug!r} is already registered.")
        adapter = Adapter(slug=slug, name=options["name"] or slug, description=options["description"])
        check_slug(adapter)  # before training, not after minutes of it
        return adapter

    def _inputs(self, options):
        try:
            training = TrainingSettings(
                rank=options["rank"],
                alpha=options["alpha"],
                target_modules=tuple(t.strip() for t in options["targets"].split(",") if t.strip()),
                steps=options["steps"],
                batch_size=options["batch_size"],
                learning_rate=options["learning_rate"],
                max_tokens=options["max_tokens"],
                seed=options["seed"],
            )
            return read_chats(options["data"]), training
        except TrainingError as error:
            raise CommandError(str(error)) from None

    def _train(self, base_model, chats, out, training, trained_on):
        bar = tqdm(total=training.steps, unit="step", desc="training", file=self.stderr._out)
        try:
            def on_step(progress):
                bar.set_postfix(loss=f"{progress.loss:.3f}")
                bar.update(1)

            return train_lora(base_model, chats, out, training, trained_on=trained_on, on_step=on_step)
        except (TrainingError, OSError) as error:
            raise CommandError(f"Training failed: {error}") from None
        finally:
            bar.close()

    def _register(self, folder: Path, adapter: Adapter) -> None:
        adapter = register_dir(folder, adapter, self.stderr)
        self.stdout.write(f"Registered {adapter.slug} (rank {adapter.rank}) at {adapter.location}.")
