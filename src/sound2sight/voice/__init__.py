"""The voice stage: a recording in, its emotion (and its point for the shared space) out.

One home for everything the stage needs, read in the order data flows:

===============  ==============================================================
``audio``        the front end: decode any file, resample, RMS-normalise, trim
                 silence, pad / truncate, log-Mel spectrograms (cached)
``vad``          the speech check: silero voice activity and the pure-tone guard;
                 what is not speech is refused with the reason
``channel``      simulated recording channels (room, noise, EQ, band, DC) for
                 training views
``whisper``      the frozen Whisper encoder and its log-Mel front end, in plain
                 PyTorch; ``ct2`` reads its CTranslate2 weights (hash-pinned)
``cache``        voice features (the encoder's layers, pooled) cached by content
``model``        ``VoiceEncoder`` (the frozen encoder(s)) and the trained head
                 ``WhisperHeadClassifier`` (layer mix, attentive statistics
                 pooling, embedding, classes); ``HeadEnsemble``: several such
                 heads (seeds) with their probabilities averaged
``classifier``   builds / loads any voice classifier: the Whisper head or the
                 log-Mel CNNs (VGG, ResNet, CRNN)
``speaker``      per-speaker standardisation and calibration to a speaker
``calibration``  temperature scaling of the probabilities, the uncertain margin
``augment``      training-time augmentation of log-Mel batches
``train``        the training loop (``train_classifier``): resumable, early
                 stopping, temperature, metrics
``tune``         the Optuna search over the classifier
``pretrained``   the voice models shipped with the package, and the command
                 that rebuilds them (``python -m sound2sight.voice.pretrained``)
===============  ==============================================================
"""
