"""Pure mask math: selecting the lowest scores, ranking across tensors,
units of structured masks, penalties. Tensors in, tensors out (`keras.ops`);
nothing here knows about layers, models or training.
"""
