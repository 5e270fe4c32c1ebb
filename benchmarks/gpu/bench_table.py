"""Markdown table of a pytest-benchmark JSON written by the GPU benchmarks (for summary.md)."""
import json
import sys


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    print("| benchmark | images/call | median ms (CUDA events) | ms/image | images/s "
          "| traffic floor ms/image | x floor |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in data["benchmarks"]:
        x = b.get("extra_info", {})
        if "cuda_event_median_ms" not in x:
            continue
        print(f"| {b['name']} | {x['images']} | {x['cuda_event_median_ms']:.2f} "
              f"| {x['ms_per_image']:.3f} | {x['ums_per_s']:.0f} "
              f"| {x['floor_ms_per_image']:.4f} | {x['ms_per_image'] / x['floor_ms_per_image']:.1f} |")
    if data["benchmarks"]:
        x = data["benchmarks"][0].get("extra_info", {})
        if "bandwidth_GBps" in x:
            print(f"\nDevice-to-device copy: {x['bandwidth_GBps']:.0f} GB/s; traffic model "
                  f"{x['bytes_per_pixel']} bytes/pixel.")


if __name__ == "__main__":
    main(sys.argv[1])
