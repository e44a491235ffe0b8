"""The ``README.txt`` of an audit export: how a regulator's expert checks it (pt-BR, English)."""

from __future__ import annotations

from collections.abc import Sequence

from protocolo.evidence.export import FORMAT


def export_readme(export_id: str, vkeys: Sequence[str], timestamped: bool) -> str:
    pins = " ".join(f"--vkey '{v}'" for v in vkeys) or "--vkey '<chave publicada / published key>'"
    stamp = ("\n  6. Carimbo de tempo do manifesto / manifest timestamp (RFC 3161):\n"
             "       head -n 2 manifest.sig > note.txt\n"
             "       openssl ts -verify -data note.txt -in manifest.tsr -CAfile RAIZ_DA_ACT.pem \\\n"
             "               -untrusted manifest.chain.pem\n") if timestamped else ""
    return f"""EXPORTAÇÃO DE AUDITORIA / AUDIT EXPORT  ({FORMAT}, {export_id})

O que é / What this is
  Todos os registros do livro-razão (ledger) do Protocolo no período, por partição, entre
  dois checkpoints assinados, com prova de completude: nada foi omitido, acrescentado ou
  movido entre períodos. Every ledger record of the period, per partition, between two signed
  checkpoints, with a completeness proof: nothing left out, added or moved between periods.

  manifest.json   período, faixas de folhas, contagens, esquemas, arquivos com tamanho e SHA-256,
                  quem pediu, para qual regulador, base legal; e o SHA-256 do manifesto anterior
                  period, leaf ranges, counts, schemas, files with size and SHA-256, who asked, for
                  which regulator, legal basis; and the previous export's manifest SHA-256 (a chain)
  manifest.sig    nota assinada (C2SP signed-note) sobre o SHA-256 do manifest.json
  SHA256SUMS      todos os arquivos / every file (sha256sum -c)
  partitions/pN/  data.avro (a evidência / the evidence: Avro object container file),
                  records.jsonl, records.csv (leitura / for reading, derivadas dos bytes),
                  start.checkpoint, end.checkpoint, consistency.proof, completeness.range,
                  timestamps/ (RFC 3161)
  schemas/        esquemas Avro dos eventos (nome = impressão digital CRC-64-AVRO)
  keys/           cópias das chaves públicas: NÃO confie nelas, compare com as publicadas
                  copies of the public keys: do NOT trust them, compare with the published ones
  Formato / format: docs/export-format.md do Protocolo.

Verificação automática / Automatic verification (offline)
  Obtenha o verificador de fonte independente (não deste diretório) e as chaves publicadas.
  Get the verifier from an independent source (not from this directory) and the published keys.
    protocolo verify-export DIR {pins} [--tsa-root RAIZ_DA_ACT.pem] [--previous DIR_ANTERIOR]
  VALID só com chaves fixadas; sem elas o veredito é UNPINNED (código 3).
  VALID only with pinned keys; without them the verdict is UNPINNED (exit 3).

Verificação manual / Manual verification
  1. sha256sum -c SHA256SUMS            (todos OK / all OK)
  2. A segunda linha do manifest.sig é o SHA-256 do manifest.json / the second line of
     manifest.sig is the SHA-256 of manifest.json:  sha256sum manifest.json
  3. Assinatura Ed25519 com openssl (chave publicada da linha de assinatura / published key):
       V='<chave publicada / published vkey>'
       echo "$V" | cut -d+ -f3- | base64 -d | tail -c 32 > pub.raw
       (printf '\\x30\\x2a\\x30\\x05\\x06\\x03\\x2b\\x65\\x70\\x03\\x21\\x00'; cat pub.raw) > pub.der
       head -n 2 manifest.sig > signed.txt
       tail -n 1 manifest.sig | awk '{{print $3}}' | base64 -d | tail -c 64 > sig.bin
       openssl pkeyutl -verify -pubin -keyform DER -inkey pub.der -rawin -in signed.txt -sigfile sig.bin
     Para cada checkpoint, o mesmo com `head -n 3` / for each checkpoint, the same with `head -n 3`.
  4. Qualquer leitor Avro / any Avro reader (e.g. python -m fastavro, avro-tools tojson):
     cada registro traz topic, partition, offset, key, value exatamente como no log; a folha
     é u16 len(topic) | topic | u32 partition | u64 offset | i32 len(key) (-1 nulo) | key |
     u32 len(value) | value (big-endian), hash = SHA-256(0x00 || folha) (RFC 6962).
  5. Completude / completeness: completeness.range traz a faixa compacta de [0, a) (base64,
     uma linha por subárvore, maior primeiro): dobrada dá a raiz de start.checkpoint; com as
     folhas do data.avro acrescentadas em ordem dá a raiz de end.checkpoint. The compact range
     of [0, a) folds to start.checkpoint's root; appending data.avro's leaves in order gives
     end.checkpoint's root (docs/export-format.md §5).{stamp}
"""
