"""Privacy: differential-privacy training with a privacy monitor, membership inference, inversion.

Modules (one algorithm each): ``accounting`` (RDP / zCDP monitor), ``noise_schedule``,
``dp_training`` (DP-SGD through opacus), ``membership`` (shadow models, LR / KNN / RF / MLP),
``membership_threshold`` (loss threshold), ``membership_calibrated`` (offline LiRA), ``metrics``
(AUC, TPR at low FPR, ROC), ``inversion`` (from a representation), ``gradient_inversion``
(DLG / iDLG), ``table`` (the privacy-robustness table). Library code: models and data come in
as arguments; nothing here imports the demo zoo.
"""
