"""Reading what is ingested: map files -> DensityMap -> CanonicalVolume, EMDB header
XML -> metadata, atomic models (PDB, mmCIF) -> simulated maps. (``swan ingest``,
which stores them, is :mod:`swan_index.indexer`.)"""

from ingest.canonical import (
    DEFAULT_GRID,
    SURFACE_LEVEL,
    CanonicalVolume,
    SizeFeatures,
    canonicalize,
    canonicalize_poses,
    choose_contour,
    to_original_frame,
    volume_correlation,
)
from ingest.contour import auto_contour
from ingest.discover import MapEntry, ModelEntry, find_entries, is_map_file
from ingest.errors import HeaderError, IngestError, MapFormatError
from ingest.header import EntryMetadata, emdb_id_from_name, read_header
from ingest.mapio import (
    DensityMap,
    MapSize,
    map_size,
    read_map,
    sha256_file,
    write_map,
)
from ingest.models import (
    AtomicModel,
    ModelInfo,
    is_model_file,
    read_model_file,
    simulate_model,
)
from ingest.simulate import ModelError, read_model, simulate_map, simulate_view
from ingest.transform import axis_rotation, random_rotation, rotate_map

__all__ = [
    "DEFAULT_GRID",
    "SURFACE_LEVEL",
    "CanonicalVolume",
    "DensityMap",
    "EntryMetadata",
    "HeaderError",
    "IngestError",
    "MapEntry",
    "MapFormatError",
    "MapSize",
    "AtomicModel",
    "ModelEntry",
    "ModelInfo",
    "is_model_file",
    "read_model_file",
    "simulate_model",
    "ModelError",
    "SizeFeatures",
    "auto_contour",
    "canonicalize",
    "choose_contour",
    "canonicalize_poses",
    "emdb_id_from_name",
    "find_entries",
    "is_map_file",
    "map_size",
    "axis_rotation",
    "random_rotation",
    "read_header",
    "read_map",
    "read_model",
    "rotate_map",
    "sha256_file",
    "simulate_map",
    "simulate_view",
    "volume_correlation",
    "to_original_frame",
    "write_map",
]
