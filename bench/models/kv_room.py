"""Room for the decoded tokens in the KV cache, so a decode step writes in place.

transformers' ``DynamicLayer`` appends each decoded position with
``torch.cat``, copying the whole key and value cache of every layer at every
step: with RAG and IRCoT prompts (900 to 2,000 tokens) the copy grows with the
prompt and is paid by every decoded token. On 8 RAG prompts of about 900
tokens (bfloat16, 2 threads) a decode step takes 42.6 ms instead of 49.4 ms
(``arbench bench``, section "Attention and KV cache"). :func:`reserve_decode_room` moves each
plain layer's keys and values into a buffer with room for the tokens still to
come; a step then writes its position into the buffer and attention reads a
view of the filled part. The view holds the same values in the same layout
along the head dimension, and the CPU attention kernels give the same bits
for it as for a contiguous copy (``tests/test_kv_room.py``).
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of larger buffers.

    Anything that replaces ``keys`` or ``values`` (crop, reorder, batch
    selection) or a step beyond the room makes the layer fall back to
    ``DynamicLayer``'s concatenation, so it is never wrong, only slower.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        batch, heads, length, dim = keys.shape
        self.dtype, self.device = keys.dtype, keys.device
        self._key_buffer = keys.new_empty((batch, heads, length + room, dim))
        self._value_buffer = values.new_empty((batch, values.shape[1], length + room,
                                               values.shape[-1]))
        self._key_buffer[:, :, :length] = keys
        self._value_buffer[:, :, :length] = values
        self._length = length
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[-2]
        in_place = (self._key_buffer is not None and end <= self._key_buffer.shape[2]
                    and self.keys.data_ptr() == self._key_buffer.data_ptr()
                    and self.values.data_ptr() == self._value_buffer.data_ptr()
                    and self.keys.shape[:2] == key_states.shape[:2]
                    and self.keys.shape[2] == self._length)
        if not in_place:
            self._key_buffer = self._value_buffer = None
            return super().update(key_states, value_states, *args, **kwargs)
        self._key_buffer[:, :, self._length:end] = key_states
        self._value_buffer[:, :, self._length:end] = value_states
        self._length = end
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values


def reserve_decode_room(cache, room: int) -> int:
    """Give every plain ``DynamicLayer`` of ``cache`` room for ``room`` more positions.

    Layers of other kinds (sliding window, recurrent, static) are left as they
    are. Returns the number of layers converted.
    """
    converted = 0
    if room < 1:
        return converted
    for index, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            cache.layers[index] = RoomyLayer(layer.keys, layer.values, room)
            converted += 1
    return converted
