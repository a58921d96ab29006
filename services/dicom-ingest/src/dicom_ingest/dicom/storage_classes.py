"""The storage SOP classes (PS3.4 Annex B.5) the archive accepts over C-STORE and STOW-RS.

pynetdicom offers two lists: ``StoragePresentationContexts`` (120, preselected so that a requestor
can propose them within the 128 presentation contexts PS3.8 allows, including retired classes old
modalities still send, such as Ultrasound Image Storage (Retired)) and ``AllStoragePresentationContexts``
(170, every current class). As the acceptor we have no such limit, so we take both.
"""

from pynetdicom import AllStoragePresentationContexts, StoragePresentationContexts

#: Every storage SOP class UID accepted, current ones first, without repeats.
STORAGE_SOP_CLASS_UIDS: tuple[str, ...] = tuple(dict.fromkeys(
    str(context.abstract_syntax) for context in (*AllStoragePresentationContexts, *StoragePresentationContexts)))
