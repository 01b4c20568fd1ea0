"""The painting stage: a conditional GAN that paints from the shared 128-d space.

One home for everything the stage needs, read in this order:

==============  ===============================================================
``model``       generator (BigGAN blocks, conditional batch norm), the pixel ResNet
                discriminator (projection), condition bank, EMA, load / generate
``projected``   the projected discriminator on frozen EfficientNet-Lite0 features
                (random channel/scale mixing, one small D per scale) and the
                emotion-guidance probe
``augment``     DiffAugment (colour, translation, cutout)
``data``        paintings at the GAN's side, audio/image conditions, sample grids
``train``       the training loop (``train_gan``): resumable, logged, checkpointed
``metrics``     pure metric functions: FD, KID, k-NN / probe consistency, diversity,
                emotion-vs-noise pixel change
``evaluate``    ``evaluate_gan``: the Lite0 judge and the independent Lite2 judge
                with held-out references; writes ``gan/metrics.json`` and grids
==============  ===============================================================
"""
