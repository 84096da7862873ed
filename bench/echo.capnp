@0xd4b7c1e2a3f45967;

# Echo interface for the pycapnp peer of the benchmark (loaded at run time).
interface Echo {
  echo @0 (data :Data) -> (data :Data);
}
