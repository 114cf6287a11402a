"""Distillation support: frozen teachers from atm runs (`teacher.py`) and offline teacher logits (`cache.py`).

The objectives live in `atm/objectives/distill.py` (MLM distillation) and
`atm/objectives/finetune.py` (task-level distillation); student initialisation in `atm/student_init.py`.
"""
