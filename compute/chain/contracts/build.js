// Compiles CxmputeVault.sol into CxmputeVault.json (ABI + bytecode) with solc-js, the compiler npm ships:
//   cd compute/chain/contracts && npm install --no-save solc@0.8.28 && node build.js
const solc = require('solc'); const fs = require('fs');
const src = fs.readFileSync('CxmputeVault.sol', 'utf8');
const input = {language: 'Solidity', sources: {'CxmputeVault.sol': {content: src}},
  settings: {optimizer: {enabled: true, runs: 200}, evmVersion: 'paris',
    outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
if (out.errors && out.errors.some(e => e.severity === 'error')) { console.error(JSON.stringify(out.errors, null, 1)); process.exit(1); }
const c = out.contracts['CxmputeVault.sol']['CxmputeVault'];
fs.writeFileSync('CxmputeVault.json', JSON.stringify({contractName: 'CxmputeVault', compiler: 'solc-js ' + solc.version(),
  evmVersion: 'paris', abi: c.abi, bytecode: '0x' + c.evm.bytecode.object}, null, 1) + '\n');
