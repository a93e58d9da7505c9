// First line of the units that read f16 storage natively (SHADER_F16 adapters only).
enable f16;
