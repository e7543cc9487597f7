"""Eval sets: Fashion-MNIST from local files, ImageFolder trees, seeded stratified subsets."""
