"""Class-conditional diffusion unlearning (SPEC §6): DDPM training and sampling, the evaluation
classifier, the DiMRA relearning attack and the generation runner."""
