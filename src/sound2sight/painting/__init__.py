"""The painting stage: a conditional GAN that paints in the latent space of TAEF2.

One home for everything the stage needs, read in this order:

==============  ===============================================================
``taef2``       the pretrained TAEF2 encoder / decoder (vendored, hash-pinned):
                paintings <-> ``32 x S/8 x S/8`` latents
``latents``     the paintings encoded once, cached by content
``model``       generator (BigGAN blocks, conditional batch norm, hierarchical
                noise) and projection discriminator on latents, the latent
                emotion probe, conditions at inference, EMA, load / generate
``augment``     DiffAugment (flip and translation on latents; colour, cutout)
``data``        paintings at the GAN's side, audio/image conditions, sample grids
``train``       the training loop (``train_gan``): resumable, logged, checkpointed
``metrics``     pure metric functions: FD, KID, k-NN / probe consistency, diversity,
                emotion-vs-noise pixel change
``evaluate``    ``evaluate_gan``: the Lite0 judge and the independent Lite2 judge
                with held-out references; writes ``gan/metrics.json`` and grids
==============  ===============================================================
"""
