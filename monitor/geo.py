"""Service areas: where a pledged fleet's vehicles may count as in service.

A service area is a GeoJSON geometry (RFC 7946: WGS84 longitude, latitude) — a ``Polygon`` or
``MultiPolygon``, or a ``Feature`` / ``FeatureCollection`` of them (their union) — or a box given
in GeoJSON's bounding-box order ``[west, south, east, north]``. Containment is shapely's
(GEOS) ``intersects`` of the point: points on the boundary are inside, holes are outside.

Why shapely: point-in-polygon with holes, multipolygons and self-intersection checks is a solved
problem in the standard geometry library; a hand-rolled ray cast gets the edge cases wrong.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ServiceRegion"]


@dataclass(frozen=True)
class ServiceRegion:
    """A service area as canonical GeoJSON geometry text (so it can be stamped, compared and hashed).

    Raises ``ValueError`` (from the constructors) naming what is wrong and what was expected.
    """

    geojson: str

    @classmethod
    def from_box(cls, west: float, south: float, east: float, north: float) -> ServiceRegion:
        """A box in degrees, GeoJSON bbox order; ``ValueError`` unless west < east, south < north, in range."""
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            msg = (
                f"box: got [{west:g}, {south:g}, {east:g}, {north:g}], expected [west, south, east, north] in "
                "degrees with west < east (-180..180) and south < north (-90..90)"
            )
            raise ValueError(msg)
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        return cls(json.dumps({"type": "Polygon", "coordinates": [ring]}, separators=(",", ":")))

    @classmethod
    def from_geojson(cls, obj: Any) -> ServiceRegion:
        """From a GeoJSON object (dict); ``ValueError`` for other types, bad coordinates or an invalid polygon."""
        import shapely
        from shapely.geometry import mapping, shape
        from shapely.validation import explain_validity

        if not isinstance(obj, dict) or "type" not in obj:
            raise ValueError(f"geojson: got {type(obj).__name__}, expected a GeoJSON object with a type")
        kind = obj["type"]
        if kind == "FeatureCollection":
            geoms = [f.get("geometry") for f in obj.get("features") or []]
        elif kind == "Feature":
            geoms = [obj.get("geometry")]
        else:
            geoms = [obj]
        shapes = []
        for g in geoms:
            if not isinstance(g, dict) or g.get("type") not in ("Polygon", "MultiPolygon"):
                got = g.get("type") if isinstance(g, dict) else g
                raise ValueError(f"geojson: got a {got!r} geometry, expected Polygon or MultiPolygon")
            try:
                s = shape(g)
            except (ValueError, TypeError, IndexError, shapely.errors.GEOSException) as exc:
                raise ValueError(f"geojson: {g['type']} coordinates unreadable ({exc})") from None
            if not s.is_valid:
                raise ValueError(f"geojson: invalid {g['type']}: {explain_validity(s)}, expected a valid polygon")
            minx, miny, maxx, maxy = s.bounds
            if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
                msg = f"geojson: coordinates out of range {s.bounds}, expected [longitude, latitude] in degrees"
                raise ValueError(msg)
            shapes.append(s)
        if not shapes:
            raise ValueError("geojson: got no geometry, expected at least one Polygon or MultiPolygon")
        union = shapely.union_all(shapes)
        return cls(json.dumps(mapping(union), separators=(",", ":")))

    def contains(self, lat: float, lon: float) -> bool:
        """True when (``lat``, ``lon``) in degrees lies inside or on the boundary."""
        import shapely

        return bool(shapely.intersects_xy(_prepared(self.geojson), lon, lat))


@functools.cache
def _prepared(geojson: str):  # type: ignore[no-untyped-def]
    import shapely
    from shapely.geometry import shape

    geom = shape(json.loads(geojson))
    shapely.prepare(geom)
    return geom
