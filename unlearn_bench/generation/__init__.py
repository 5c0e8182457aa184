"""Class-conditional diffusion unlearning (docs/generation.md): DDPM training and sampling, the evaluation
classifier, the DiMRA relearning attack and the generation runner."""
