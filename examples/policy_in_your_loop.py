"""A searched LAW policy in a training loop of your own: plain PyTorch, no Horovod, no law_hpc job.

    python examples/policy_in_your_loop.py [--policy fmnist_noisy_mlp] [--epochs 4] [--images 6000]

Trains the MLP of the shipped policy's search on Fashion-MNIST with 40 % of the training labels replaced
at random, weighted by the policy, and prints the test accuracy after every epoch. What law_hpc.train
does, in a loop you can copy: LAWLoss cuts the stages by step as the search cut them and normalises the loss
as the search did; the loop reports the validation accuracy at each stage end.
"""
import argparse

import numpy as np
import torch

from law_hpc.data.arrays import load_fmnist
from law_hpc.models import create_model
from law_hpc.weighter import LAWLoss

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--policy", default="fmnist_noisy_mlp", help="policy.h5 of a search, or a shipped policy's name")
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--images", type=int, default=6000, help="training images (the rest of 60,000 unused)")
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.default_rng(0)
train, test = (load_fmnist("/usr/share/datasets/fashion-mnist", part) for part in ("train", "test"))
order = rng.permutation(len(train.labels))
val_index, train_index = order[:1000], order[1000:1000 + args.images]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> normalised float [N, C, H, W]."""
    return torch.from_numpy((images.astype(np.float32) / 255 - train.mean[0]) / train.std[0]).permute(0, 3, 1, 2)


x_train, x_val, x_test = (to_tensor(train.images[train_index]), to_tensor(train.images[val_index]),
                          to_tensor(test.images[:2000]))
y_val, y_test = torch.from_numpy(train.labels[val_index]), torch.from_numpy(test.labels[:2000])
noisy = train.labels[train_index].copy()
flip = rng.random(len(noisy)) < 0.4
noisy[flip] = rng.integers(0, 10, flip.sum())  # your labels are noisy already; these are made so
y_train = torch.from_numpy(noisy)

model = create_model("mlp", num_classes=10, in_channels=1, image_size=28, hidden=(512, 512))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
batch_size = 128
steps_per_epoch = len(y_train) // batch_size
# the policy's stages cut by step as its search cut them, the loss normalised as it was searched
law_loss = LAWLoss.from_policy(args.policy, np.bincount(noisy, minlength=10), steps_per_epoch, args.epochs)


def evaluate(images, labels) -> tuple[float, torch.Tensor]:
    """Accuracy and per-sample losses (the policy's loss; a "val_rank" policy ranks training losses among them)."""
    model.eval()
    with torch.no_grad():
        logits = model(images)
        return float((logits.argmax(1) == labels).float().mean()), law_loss.base_loss(logits, labels)


for epoch in range(args.epochs):
    batches = torch.randperm(len(y_train))[:steps_per_epoch * batch_size].view(steps_per_epoch, batch_size)
    for position, batch in enumerate(batches):
        step = epoch * steps_per_epoch + position
        model.train()
        loss = law_loss(model(x_train[batch]), y_train[batch], step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if law_loss.stage_ends(step):  # the stage state follows the clean validation set, as in the search
            law_loss.observe_validation(*evaluate(x_val, y_val))
    print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {evaluate(x_test, y_test)[0]:.4f}", flush=True)
