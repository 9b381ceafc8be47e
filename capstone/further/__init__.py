"""Going further: what the course's linear map and margin loss can be measured against.

Each module adds one idea beside the course core; training receives them as objects (an
embedder, a loss function), so the core never imports them. It may import :mod:`capstone.course`.


- :mod:`capstone.further.embedders`: an MLP image embedder (one hidden ReLU layer) and
  standardised features (mean and spread of the training images, kept in the model file).
- :mod:`capstone.further.losses`: an in-batch softmax (contrastive) loss with a temperature,
  text to image (the default preset's) or both ways (``"contrastive-both"``, as CLIP).
- :mod:`capstone.further.ridge`: the closed-form reference, ridge regression from standardised
  features to each image's mean caption embedding.
- :mod:`capstone.further.sif`: SIF text weighting (``a / (a + p(word))``, first principal
  component removed).
- :mod:`capstone.further.tradeoff`: Recall@k against latency of approximate-search indexes
  (notebook 6; the indexes are passed in, e.g. from :mod:`capstone.search.ann`).

Nothing is imported here, so that one of these modules comes without the others.
"""
